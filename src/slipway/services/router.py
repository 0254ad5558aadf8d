"""``slipway router bootstrap ENV``: the environment's nginx include file, written before nginx first starts.

nginx refuses to start while its ``proxy_pass http://slipway_<group>;`` names an upstream that does not
exist, and only Slipway writes that upstream. Bootstrapping writes it with the environment's targets as they
are: the hosts (or each host's serving blue/green slot) that run a release, the containers that run now,
or, when nothing is deployed yet, a placeholder server marked down (nginx starts and answers 502 until
the first deployment). A file Slipway wrote is left as it is; one it did not write is replaced only with
``adopt`` (audited). The first deployment behind a router whose file is missing goes through the same
:meth:`~slipway.routers.nginx.NginxRouter.bootstrap` (:func:`slipway.services.traffic.ensure_upstream`).
"""

from __future__ import annotations

import asyncio

from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo
from slipway.errors import ConfigError
from slipway.model.config import Environment
from slipway.model.containers import ContainerTargetSpec
from slipway.model.routing import Backend
from slipway.model.strategy import BlueGreen
from slipway.routers.nginx import Bootstrap
from slipway.services.app import App
from slipway.services.environments import require_environment
from slipway.services.traffic import nginx_router

#: The release a router port is rendered with: ports name no release.
_NO_RELEASE = ReleaseInfo("<release>", "sha256:<digest>", "<commit>")


async def bootstrap_router(app: App, environment: str, *, adopt: bool = False) -> list[Bootstrap]:
    """Write each upstream group file of ``environment`` that is missing (``adopt``: replace a foreign one)."""
    loaded = app.config
    env = require_environment(loaded.project, environment)
    if env.router is None:
        raise ConfigError(
            f"environment {environment!r} has no router: block",
            key_path=f"environments.{environment}.router",
            hint="add router: {kind: nginx, conf_dir: ..., port: ...} to it (docs/strategies.md)",
        )
    groups = await _groups(app, loaded, environment, env)
    router = nginx_router(env.router, root=loaded.root)
    done = []
    try:
        for group, backends in groups.items():
            result = await router.bootstrap(group, backends, adopt=adopt)
            if result.written:
                app.store.audit(
                    app.settings.actor,
                    "router.adopt" if result.adopted else "router.bootstrap",
                    f"environment {environment}",
                    {"group": group, "path": result.path, "backends": [b.address for b in result.state.backends]},
                )
            done.append(result)
    finally:
        await router.close()
    return done


async def _groups(app: App, loaded: LoadedConfig, environment: str, env: Environment) -> dict[str, list[Backend]]:
    """group -> the backends that serve now (none: nothing deployed yet)."""
    assert env.router is not None
    deployed = {h.host for h in app.store.host_releases(environment)}
    if any(isinstance(t, ContainerTargetSpec) for t in env.targets):
        return await _container_groups(app, loaded, environment, env, deployed)
    if isinstance(env.strategy, BlueGreen):
        return {env.router.group: await _serving_slots(app, loaded, environment)}
    return {env.router.group: [b for host, b in _host_backends(loaded, environment).items() if host in deployed]}


def _host_backends(loaded: LoadedConfig, environment: str) -> dict[str, Backend]:
    """host -> its backend (``host.address:router.port``), as a deployment sets it."""
    from slipway.clock import SystemClock
    from slipway.engine.events import NullObserver
    from slipway.engine.planner import template_context
    from slipway.services.releases import environment_url, hosts_of
    from slipway.services.traffic import traffic_gate

    project, env = loaded.project, loaded.project.environments[environment]
    url = environment_url(project, environment)
    contexts = {
        h.name: template_context(project=project, environment=environment, env=env, host=h, release=_NO_RELEASE, url=url)
        for h in hosts_of(loaded, environment)
    }
    gate = traffic_gate(env, environment=environment, contexts=contexts, clock=SystemClock(), observer=NullObserver())
    return dict(gate.backends) if gate is not None else {}


async def _serving_slots(app: App, loaded: LoadedConfig, environment: str) -> list[Backend]:
    """Blue/green: each host's serving slot's backend (the store says which slot serves)."""
    from slipway.engine.events import NullObserver
    from slipway.services.bluegreen import slot_gate

    gate = slot_gate(loaded, environment, _NO_RELEASE, observer=NullObserver())
    await gate.close()  # only its backends are needed: the router is never asked
    serving = {(s.host, s.slot) for s in app.store.slot_releases(environment) if s.serving}
    return [b for slot, hosts in gate.backends.items() for host, b in hosts.items() if (host, slot) in serving]


async def _container_groups(
    app: App, loaded: LoadedConfig, environment: str, env: Environment, deployed: set[str]
) -> dict[str, list[Backend]]:
    """Each routed service's group -> the published ports of the containers running now."""
    from slipway.services.container_rollout import open_engines
    from slipway.services.containers import image_artifact, registry_of, service_specs
    from slipway.targets.container import ContainerTarget

    specs = {
        t.name: service_specs(loaded, environment, t, dict.fromkeys(env.secrets, ""), _NO_RELEASE)
        for t in env.targets if isinstance(t, ContainerTargetSpec)
    }
    groups: dict[str, list[Backend]] = {s.group: [] for ss in specs.values() for s in ss if s.group is not None}
    targets = [t for t in env.targets if isinstance(t, ContainerTargetSpec) and t.name in deployed]
    if not targets:  # nothing deployed: no engine to ask
        return groups
    known = {h.host: h.artifact_digest for h in app.store.host_releases(environment)}
    engines = await open_engines(targets, loaded, timeout=image_artifact(loaded.project).timeout)
    try:
        credentials = registry_of(app, loaded).credentials
        for name, opened in engines.items():
            target = ContainerTarget(opened.engine, app=loaded.project.name, environment=environment,
                                     credentials=credentials, instance=name)
            for spec in specs[name]:
                running = (await target.units(spec.name, recorded=known.get(name))).current
                if spec.group is not None and running is not None and running.backend is not None:
                    groups[spec.group].append(running.backend)
    finally:
        await asyncio.gather(*(e.close() for e in engines.values()), return_exceptions=True)
    return groups
