"""Run an application's services as containers on a container engine, pinned by image digest.

The pieces, smallest first:

* :class:`ServiceSpec`: one service of slipway.yml (``web``, ``worker``): its published port, command,
  environment, secrets, readiness checks and the services it depends on.
* :class:`ContainerTarget`: the containers of one app and environment on one engine. ``start`` pulls a
  digest, starts a container and waits until it passes its readiness checks (or removes it again);
  ``retire`` stops and removes one. Containers are named and labelled so that Slipway can read back
  which digest runs (``io.slipway.digest``) and which one ran before it (``io.slipway.previous``).
* :func:`deploy_services` / :func:`rollback_services`: several services in dependency order. Every
  new container is started and made ready, and routed services are switched on the router (the old
  backend drained, not yet stopped), before any old container is stopped; if one service fails, the
  services already switched are switched back to their old containers, which never stopped, and
  the new containers are removed: what ran before keeps running, untouched. Once every service is
  switched the target runs the new containers; stopping the old ones is the last part of the switch,
  and if it fails (the engine lost) :class:`~slipway.errors.RetireFailed` names the old containers left
  running. :meth:`ContainerTarget.units` finds such orphans, and the next deployment removes them.

Environment variables and secrets reach the container as its environment. They are never logged
(only their names are) nor put in labels or error messages. Note that anyone who may inspect the
container on the engine can read its environment: that is the engine's access control, not ours.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipway.artifacts.image import (
    LABEL,
    Engine,
    ImageRef,
    RegistryCredentials,
    check_ports,
    container_logs,
    published_ports,
    pull_image,
    remove_container,
    retarget_checks,
)
from slipway.checks.runner import raise_for_failures, run_checks
from slipway.clock import SystemClock
from slipway.errors import (
    CheckFailed,
    ConfigError,
    DeploymentError,
    HostOutcome,
    RetireFailed,
    SlipwayError,
    TargetError,
)
from slipway.model.checks import CheckSpec
from slipway.model.containers import dependency_order
from slipway.model.routing import Backend, Router
from slipway.ports import Clock

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the app as slipway.yml declares it (secrets already resolved)."""

    name: str
    #: The container port published for the router (None: not routed, e.g. a worker).
    port: int | None = None
    #: Replaces the image's CMD (a worker from the web image: same image, another command).
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    #: Resolved secret values; they go into the container environment and nowhere else.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Checks against host ``container`` (see :func:`slipway.artifacts.image.retarget_checks`).
    readiness: tuple[CheckSpec, ...] = ()
    depends_on: tuple[str, ...] = ()
    #: The router's upstream group for this service (None: not routed).
    group: str | None = None
    #: Seconds a stopping container gets between SIGTERM and SIGKILL.
    stop_timeout: int = 10
    #: The engine's init as PID 1, forwarding signals (ServiceConfig.init).
    init: bool = True
    #: A service without readiness checks must still run after this many seconds.
    settle: float = 1.0

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigError(f"service name {self.name!r} must be 1-41 lowercase letters, digits, '_' or '-'",
                              key_path="services")
        if self.group is not None and self.port is None:
            raise ConfigError(f"service {self.name!r} has a router group but no port", key_path=f"services.{self.name}")


@dataclass(frozen=True)
class RunningService:
    """A container of a service, as read back from the engine."""

    service: str
    container_id: str
    name: str
    ref: ImageRef
    #: Where the router reaches it (None when the service publishes no port).
    backend: Backend | None
    #: The image that ran before this one was deployed (what rollback starts again).
    previous: ImageRef | None
    created: str = ""


@dataclass(frozen=True)
class ServiceUnits:
    """A service's containers on one target that run a process, read back before a deployment."""

    current: RunningService | None
    #: Neither current nor needed: left behind by an interrupted stop or switch (see :meth:`ContainerTarget.units`).
    orphans: tuple[RunningService, ...] = ()


class ContainerTarget:
    """The containers of app ``app`` in environment ``environment`` on one engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        app: str,
        environment: str,
        credentials: RegistryCredentials | None = None,
        clock: Clock | None = None,
        instance: str | None = None,
    ) -> None:
        for kind, value in (("app", app), ("environment", environment)):
            if not _NAME_RE.match(value):
                raise ConfigError(f"{kind} name {value!r} cannot name a container")
        if instance is not None and not _INSTANCE_RE.match(instance):
            raise ConfigError(f"target name {instance!r} cannot name a container")
        self.engine = engine
        self.app = app
        self.environment = environment
        #: The slipway.yml target these containers belong to, so that two targets may share an engine.
        self.instance = instance
        self.credentials = credentials
        self.clock: Clock = clock or SystemClock()

    @property
    def name(self) -> str:
        """The engine's name (logs, errors, the store's host column)."""
        return self.engine.spec.name

    def container_name(self, service: str, ref: ImageRef) -> str:
        """``slipway-<app>-<env>-<service>-<digest12>``: unique per digest, readable in ``ps``."""
        scope = f"{self.environment}-{self.instance}" if self.instance else self.environment
        return f"slipway-{self.app}-{scope}-{service}-{ref.short}"

    def labels(self, service: str, ref: ImageRef, previous: ImageRef | None) -> dict[str, str]:
        """The labels that let Slipway find a service's containers and their digests."""
        labels = {
            f"{LABEL}.app": self.app, f"{LABEL}.environment": self.environment, f"{LABEL}.service": service,
            f"{LABEL}.image": ref.reference, f"{LABEL}.digest": ref.digest,
        }
        if previous is not None:
            labels[f"{LABEL}.previous"] = previous.reference
        if self.instance:
            labels[f"{LABEL}.target"] = self.instance
        return labels

    # -- reading back ------------------------------------------------------------------------

    def _label_filter(self, service: str) -> list[str]:
        labels = [f"{LABEL}.app={self.app}", f"{LABEL}.environment={self.environment}", f"{LABEL}.service={service}"]
        if self.instance:
            labels.append(f"{LABEL}.target={self.instance}")
        return labels

    async def running(self, service: str) -> list[RunningService]:
        """The service's running containers, oldest first (one, except in the middle of a deploy)."""
        filters = {"label": self._label_filter(service), "status": "running"}
        summaries = await self.engine.call("list containers", self.engine.client.api.containers, filters=filters)
        found = []
        for summary in summaries:
            attrs = await self.engine.call("inspect container", self.engine.client.api.inspect_container,
                                           summary["Id"])
            found.append(self._read(service, attrs))
        return sorted(found, key=lambda r: r.created)

    async def units(self, service: str, *, recorded: str | None = None) -> ServiceUnits:
        """The service's containers that run a process: the current one and the orphans.

        The current one is the newest *running* container of the digest the store records for this
        target (``recorded``), else the newest running one. Every other container whose process runs is
        an orphan, including one stuck "stopping" (its stop was cut short, e.g. the engine was lost):
        containers keep no previous unit, rollback starts the previous digest again. Exited containers
        are not orphans (nothing runs, and a crashed container keeps its logs).
        """
        api = self.engine.client.api
        filters = {"label": self._label_filter(service)}
        summaries = await self.engine.call("list containers", api.containers, all=True, filters=filters)
        live: list[tuple[RunningService, bool]] = []
        for summary in summaries:
            attrs = await self.engine.call("inspect container", api.inspect_container, summary["Id"])
            state = attrs.get("State") or {}
            if state.get("Running") or state.get("Pid"):
                live.append((self._read(service, attrs), bool(state.get("Running"))))
        running = sorted((unit for unit, is_running in live if is_running), key=lambda r: r.created)
        pinned = [unit for unit in running if unit.ref.digest == recorded]
        current = pinned[-1] if pinned else running[-1] if running else None
        return ServiceUnits(current, tuple(unit for unit, _ in live if unit is not current))

    async def current(self, service: str) -> RunningService | None:
        """The newest running container of ``service``, or None."""
        running = await self.running(service)
        return running[-1] if running else None

    def _read(self, service: str, attrs: Mapping[str, Any]) -> RunningService:
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        previous = labels.get(f"{LABEL}.previous")
        port = labels.get(f"{LABEL}.port")
        backend = None
        if port:
            host_port = published_ports(attrs, [int(port)]).get(int(port))
            backend = Backend(host=self.engine.spec.host_ip, port=host_port) if host_port else None
        return RunningService(
            service=service, container_id=str(attrs["Id"]), name=str(attrs.get("Name", "")).lstrip("/"),
            ref=ImageRef.parse(labels[f"{LABEL}.image"]), backend=backend,
            previous=ImageRef.parse(previous) if previous else None, created=str(attrs.get("Created", "")),
        )

    # -- changing ----------------------------------------------------------------------------

    async def start(self, spec: ServiceSpec, ref: ImageRef, *, previous: ImageRef | None = None) -> RunningService:
        """Pull ``ref`` by digest, start a container and wait until it is ready; remove it if it is not."""
        await pull_image(self.engine, ref, credentials=self.credentials)
        name = self.container_name(spec.name, ref)
        await remove_container(self.engine, name)  # a stopped leftover of an earlier attempt
        ports = check_ports(spec.readiness) | ({spec.port} if spec.port else set())
        labels = self.labels(spec.name, ref, previous)
        if spec.port:
            labels[f"{LABEL}.port"] = str(spec.port)
        api = self.engine.client.api
        log.info("starting %s from %s (environment: %s)", name, ref.reference,
                 ", ".join(sorted([*spec.env, *spec.secrets])) or "none")
        created = await self.engine.call(
            f"create container {name}", api.create_container, ref.reference, name=name,
            command=list(spec.command) if spec.command else None, environment={**spec.env, **spec.secrets},
            labels=labels, ports=sorted(ports), stop_timeout=spec.stop_timeout,
            host_config=api.create_host_config(
                port_bindings={p: (self.engine.spec.host_ip, None) for p in ports},
                restart_policy={"Name": "no"},
                init=spec.init or None,
            ),
        )
        container_id = str(created["Id"])
        try:
            await self.engine.call(f"start container {name}", api.start, container_id)
            attrs = await self.engine.call("inspect container", api.inspect_container, container_id)
            await self._wait_ready(spec, container_id, attrs)
        except BaseException:
            await remove_container(self.engine, container_id)
            raise
        return self._read(spec.name, attrs)

    async def _wait_ready(self, spec: ServiceSpec, container_id: str, attrs: Mapping[str, Any]) -> None:
        ports = check_ports(spec.readiness)
        try:
            if spec.readiness:
                checks = retarget_checks(spec.readiness, self.engine.spec.host_ip, published_ports(attrs, ports))
                raise_for_failures(await run_checks(checks, clock=self.clock))
            else:
                await self.clock.sleep(spec.settle)
            state = await self.engine.call("inspect container", self.engine.client.api.inspect_container,
                                           container_id)
            if not state["State"].get("Running"):
                raise CheckFailed(f"container exited with code {state['State'].get('ExitCode')}",
                                  check=f"{spec.name} is running")
        except CheckFailed as exc:
            logs = await container_logs(self.engine, container_id)
            raise CheckFailed(
                f"service {spec.name!r} did not become ready on {self.name}: {exc.message}",
                evidence="container output:\n    " + "\n    ".join(logs.splitlines()[-10:]) if logs else "",
                hint="the previous container keeps running; fix the image or the readiness checks",
            ) from exc

    async def verify(self, spec: ServiceSpec) -> None:
        """Run ``spec``'s readiness checks against its running container again (a canary's bake)."""
        current = await self.current(spec.name)
        if current is None:
            raise CheckFailed(f"service {spec.name!r} has no running container on {self.name}",
                              check=f"{spec.name} is running")
        attrs = await self.engine.call("inspect container", self.engine.client.api.inspect_container,
                                       current.container_id)
        await self._wait_ready(spec, current.container_id, attrs)

    async def retire(self, running: RunningService, *, stop_timeout: int = 10) -> None:
        """Stop (SIGTERM, then SIGKILL after ``stop_timeout``) and remove a container."""
        log.info("stopping %s (%s)", running.name, running.ref.reference)
        try:
            await self.engine.call(f"stop container {running.name}", self.engine.client.api.stop,
                                   running.container_id, timeout=stop_timeout)
        except TargetError as exc:
            if "no such container" not in exc.message.lower():
                raise
        await remove_container(self.engine, running.container_id)


# -- several services --------------------------------------------------------------------------


def deploy_order(services: Sequence[ServiceSpec]) -> list[ServiceSpec]:
    """The services in dependency order (a service after everything it depends on), stable otherwise."""
    by_name = {s.name: s for s in services}
    if len(by_name) != len(services):
        raise ConfigError("two services have the same name", key_path="services")
    return [by_name[name] for name in dependency_order({s.name: s.depends_on for s in services})]


@dataclass
class _Step:
    spec: ServiceSpec
    old: RunningService | None
    new: RunningService | None = None
    switched: bool = False


@dataclass(frozen=True)
class ServicesRelease:
    """What a deploy left running: the service's container, by service name."""

    running: Mapping[str, RunningService]
    #: Services whose digest was already running and were left alone.
    unchanged: tuple[str, ...] = ()


async def deploy_services(
    target: ContainerTarget,
    services: Sequence[ServiceSpec],
    images: Mapping[str, ImageRef],
    *,
    router: Router | None = None,
) -> ServicesRelease:
    """Deploy ``images[service]`` for every service in dependency order; all or nothing.

    Phase 1, in order: start each new container and wait until it is ready; for a routed service add
    it to its group and drain the old backend (taken out, in-flight requests finished). Phase 2, in
    reverse order: remove the old backends from the groups and stop the old containers. A failure in
    phase 1 switches the routed services back and removes the new containers; the old ones never
    stopped. Raises :class:`DeploymentError` holding each service's outcome.
    """
    ordered = deploy_order(services)
    missing = [s.name for s in ordered if s.name not in images]
    if missing:
        raise ConfigError(f"no image digest for service(s): {', '.join(missing)}", key_path="services")
    if router is None and any(s.group for s in ordered):
        raise ConfigError("services with a router group need a router", key_path="router")
    steps: list[_Step] = []
    unchanged: list[str] = []
    for spec in ordered:
        step = _Step(spec, await target.current(spec.name))
        if step.old is not None and step.old.ref == images[spec.name]:
            unchanged.append(spec.name)
            step.new = step.old
            continue
        steps.append(step)
        try:
            step.new = await target.start(spec, images[spec.name], previous=step.old.ref if step.old else None)
            await _switch_to_new(router, step)
        except SlipwayError as exc:
            left = await _undo(target, router, steps)
            kept = (f"; the router was switched back, but these new containers could not be removed: "
                    f"{', '.join(left)} (the next deployment removes them)" if left else "")
            raise DeploymentError(
                f"deploying {spec.name} on {target.name} failed; every service was left as it was{kept}",
                results=_outcomes(target, ordered, failed=spec.name, error=exc),
                hint=exc.hint,
            ) from exc
    await _retire_all(target, router, steps)
    running = {s.spec.name: s.new for s in steps if s.new is not None}
    for name in unchanged:
        current = await target.current(name)
        if current is not None:
            running[name] = current
    return ServicesRelease(running=running, unchanged=tuple(unchanged))


async def rollback_services(
    target: ContainerTarget, services: Sequence[ServiceSpec], *, router: Router | None = None
) -> ServicesRelease:
    """Start every service's previous digest again (read from its running container), together."""
    images: dict[str, ImageRef] = {}
    for spec in services:
        current = await target.current(spec.name)
        if current is None or current.previous is None:
            raise DeploymentError(f"service {spec.name!r} on {target.name} has no previous image to roll back to",
                                  hint="roll back by deploying a recorded digest explicitly")
        images[spec.name] = current.previous
    return await deploy_services(target, services, images, router=router)


async def _switch_to_new(router: Router | None, step: _Step) -> None:
    if router is None or step.spec.group is None or step.new is None or step.new.backend is None:
        return
    step.switched = True
    if step.old is None or step.old.backend is None:
        await router.set_upstream(step.spec.group, [step.new.backend])
        return
    await router.set_upstream(step.spec.group, [step.old.backend, step.new.backend])
    # Drain: the old backend takes no new requests and its in-flight ones finish; it keeps running
    # until every service is switched, so that a later failure can switch back to it at once.
    await router.drain(step.spec.group, step.old.backend)


async def _retire_all(target: ContainerTarget, router: Router | None, steps: Sequence[_Step]) -> None:
    """Phase 2, in reverse order. Every new container already serves: a failure here cannot be undone
    here (the engine may be gone), so it is reported as :class:`RetireFailed`, naming what still runs."""
    done: set[str] = set()
    try:
        for step in reversed(steps):
            await _retire_old(target, router, step)
            done.add(step.spec.name)
    except SlipwayError as exc:
        left = tuple(s.old.name for s in steps if s.old is not None and s.spec.name not in done)
        raise RetireFailed(
            "every service switched to its new container, but stopping the old ones failed: "
            f"{exc.message}; not stopped, out of the router: {', '.join(left)}",
            host=target.name, left=left,
            hint="the next deployment of this environment removes them (orphans) once the engine answers",
        ) from exc


async def _retire_old(target: ContainerTarget, router: Router | None, step: _Step) -> None:
    if router is not None and step.spec.group is not None and step.new is not None and step.new.backend:
        await router.set_upstream(step.spec.group, [step.new.backend])
    if step.old is not None:
        await target.retire(step.old, stop_timeout=step.spec.stop_timeout)


async def _undo(target: ContainerTarget, router: Router | None, steps: Sequence[_Step]) -> list[str]:
    """Switch routed services back to their old containers and remove the new ones (best effort); the
    names of the new containers that may still run (the engine lost: orphans the next deployment removes)."""
    left: list[str] = []
    for step in reversed(steps):
        try:
            if router is not None and step.switched and step.spec.group and step.old and step.old.backend:
                await router.set_upstream(step.spec.group, [step.old.backend])
        except SlipwayError:  # the new container may still serve: it stays
            log.exception("switching %s on %s back failed; fix it by hand", step.spec.name, target.name)
            continue
        if step.new is None or step.new is step.old:
            continue
        try:
            await remove_container(target.engine, step.new.container_id)
        except SlipwayError:
            log.exception("removing the new container of %s on %s failed", step.spec.name, target.name)
            left.append(step.new.name)
    return left


def _outcomes(
    target: ContainerTarget, ordered: Sequence[ServiceSpec], *, failed: str, error: SlipwayError
) -> dict[str, HostOutcome]:
    results: dict[str, HostOutcome] = {}
    for spec in ordered:
        key = f"{target.name}/{spec.name}"
        if spec.name == failed:
            results[key] = HostOutcome(host=key, ok=False, step="start", error=str(error))
        else:
            results[key] = HostOutcome(host=key, ok=True, step="unchanged")
    return results
