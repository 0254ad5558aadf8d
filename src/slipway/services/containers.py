"""The image artifact of a run: build once per commit, smoke test, push; and the services it runs as.

``PipelineRun.build`` hands an ``artifact: {kind: image}`` project to :func:`build_image_artifact`: the
image is built from the commit's clean export through the build engine, a container of it is smoke
tested, and only then pushed. The store records the artifact by the registry's **manifest digest**, so
every later deploy, promotion and rollback pulls exactly those bytes (``registry/name@sha256:...``).
The deploying itself is :mod:`slipway.services.container_rollout`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar, cast

from slipway.artifacts.image import (
    BuiltImage,
    Engine,
    EngineSpec,
    ImageRef,
    Registry,
    RegistryCredentials,
    SmokeTest,
    build_image,
    push_image,
    smoke_test,
)
from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo
from slipway.engine.steps import StepRunner
from slipway.engine.template import render
from slipway.errors import ConfigError
from slipway.model.config import Project
from slipway.model.containers import ContainerTargetSpec, ImageArtifactSpec
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import State
from slipway.ports import Target
from slipway.services.app import App
from slipway.services.secrets import resolve_ref
from slipway.targets.container import ServiceSpec

T = TypeVar("T")
#: The build engine when neither ``artifact.engine`` nor ``DOCKER_HOST`` names one.
DEFAULT_ENGINE = "unix:///var/run/docker.sock"


def is_image_project(project: Project) -> bool:
    """Whether the project's artifact is a container image."""
    return isinstance(project.artifact, ImageArtifactSpec)


def image_artifact(project: Project) -> ImageArtifactSpec:
    """The project's image artifact; ConfigError when the artifact is an archive."""
    if not isinstance(project.artifact, ImageArtifactSpec):
        raise ConfigError("this project's artifact is not an image", key_path="artifact.kind")
    return project.artifact


def build_engine_url(artifact: ImageArtifactSpec, environ: Mapping[str, str]) -> str:
    """``artifact.engine``, else ``DOCKER_HOST``, else the default socket."""
    return artifact.engine or environ.get("DOCKER_HOST") or DEFAULT_ENGINE


def registry_of(app: App, loaded: LoadedConfig) -> Registry:
    """The artifact's registry with its login resolved (the values are masked from now on)."""
    spec = image_artifact(loaded.project).registry
    if spec.username is None or spec.password is None:
        return Registry(spec.address)
    user = spec.username
    if not isinstance(user, str):
        user = resolve_ref(user, name="registry username", where="artifact.registry.username",
                           root=loaded.root, environ=app.environ)
    password = resolve_ref(spec.password, name="registry password", where="artifact.registry.password",
                           root=loaded.root, environ=app.environ)
    app.masker.add([password])
    return Registry(spec.address, credentials=RegistryCredentials(user, password))


def image_ref(loaded: LoadedConfig, digest: str) -> ImageRef:
    """``registry/name@digest``: how a recorded artifact is pulled."""
    artifact = image_artifact(loaded.project)
    return ImageRef(f"{artifact.registry.address}/{artifact.name}", digest)


def step_host(name: str) -> Target:
    """StepRunner records a step under its target's name; an engine is named, it is not a shell Target."""
    return cast(Target, SimpleNamespace(name=name))


async def recorded(steps: StepRunner, host: str, label: str, action: Callable[[], Awaitable[tuple[T, str]]]) -> T:
    """Run ``action`` as a recorded step (its note is the step's log) and return its value."""
    box: list[T] = []

    async def run() -> str:
        value, note = await action()
        box.append(value)
        return note

    await steps.run_builtin(step_host(host), label, run)
    return box[0]


async def build_image_artifact(app: App, loaded: LoadedConfig, run: RunRecord, stage: StageRecord, *,
                               workspace: Path) -> State:
    """Build the commit's image once, smoke test it, push it; record it by its manifest digest."""
    project = loaded.project
    artifact = image_artifact(project)
    existing = app.store.artifact_for_commit(project.name, run.commit)
    if existing is not None:
        app.store.set_run_artifact(run.id, existing.digest)
        app.observer.message(f"commit {run.commit[:12]} was built before: reusing "
                             f"{image_ref(loaded, existing.digest).reference}")
        return State.SUCCEEDED
    context = workspace / artifact.context
    if not context.is_dir():
        raise loaded.error(f"build context {artifact.context!r} is not a directory of commit {run.commit[:12]}",
                           ("artifact", "context"))
    registry = registry_of(app, loaded)
    steps = StepRunner(store=app.store, stage_id=stage.id, observer=app.observer, masker=app.masker)
    spec = EngineSpec(build_engine_url(artifact, app.environ), name="build", timeout=artifact.timeout)
    async with await Engine.open(spec) as engine:
        ref, size = await _publish(engine, steps, artifact, registry, run.commit, project.name, context)
    app.store.record_artifact(digest=ref.digest, project=project.name, commit=run.commit, built_at=time.time(),
                              size=size, file_count=0, run_id=run.id)
    app.store.set_run_artifact(run.id, ref.digest)
    app.observer.message(f"image {ref.reference} ({size} bytes): built, smoke tested, pushed")
    return State.SUCCEEDED


async def _publish(engine: Engine, steps: StepRunner, artifact: ImageArtifactSpec, registry: Registry,
                   commit: str, project: str, context: Path) -> tuple[ImageRef, int]:
    """The three recorded steps: build (or reuse) the image, smoke test it, push it."""
    repository = f"localhost/slipway/{artifact.name}"

    async def build() -> tuple[BuiltImage, str]:
        built = await build_image(engine, context, repository=repository, commit=commit,
                                  dockerfile=artifact.dockerfile, build_args=artifact.build_args,
                                  labels={"io.slipway.project": project})
        return built, f"{built.local_ref}: image {built.image_id}" + (" (built before)" if built.reused else "")

    built = await recorded(steps, "build", f"build image {artifact.name}", build)

    async def smoke() -> tuple[None, str]:
        result = await smoke_test(engine, built, SmokeTest(checks=artifact.smoke))
        return None, result.summary()

    await recorded(steps, "build", "smoke test the image", smoke)

    async def push() -> tuple[ImageRef, str]:
        ref = await push_image(engine, built, registry, name=artifact.name)
        return ref, f"pushed {ref.reference}"

    ref = await recorded(steps, "build", f"push to {registry.address}", push)
    attrs = await engine.call("inspect image", engine.client.api.inspect_image, built.image_id)
    return ref, int(attrs.get("Size") or 0)


def describe_build(project: Project) -> list[str]:
    """What the build stage will do, for ``slipway run --dry-run``."""
    artifact = project.artifact
    if isinstance(artifact, ImageArtifactSpec):
        return [
            f"   build image {artifact.name} from {artifact.context}/{artifact.dockerfile} (once per commit)",
            f"   smoke test: {', '.join(c.name for c in artifact.smoke)}",
            f"   push to {artifact.registry.address}; deploys pull {artifact.registry.address}/{artifact.name}@<digest>",
        ]
    return [f"   $ {c}" for c in artifact.build] + [f"   package: {', '.join(artifact.paths)}"]


def service_specs(loaded: LoadedConfig, environment: str, target: ContainerTargetSpec,
                  secrets: Mapping[str, str], release: ReleaseInfo) -> list[ServiceSpec]:
    """The services ``target`` runs, with env rendered for it and secret values filled in."""
    project = loaded.project
    env = project.environments[environment]
    context = {
        "project": project.name,
        "environment": {"name": environment},
        "vars": {**env.vars, **target.vars},
        "host": {"name": target.name, "address": target.publish_address},
        "release": {"id": release.id, "digest": release.digest, "commit": release.commit},
    }
    specs = []
    for name in target.services or tuple(project.services):
        service = project.services[name]
        variables = {
            key: render(_text(value), context, shell=False, where=f"services.{name}.env.{key}")
            for key, value in service.env.items()
        }
        routed = env.router is not None and service.port is not None
        specs.append(ServiceSpec(
            name=name, port=service.port, command=service.command, env=variables,
            secrets={key: secrets[key] for key in service.secrets}, readiness=service.readiness,
            depends_on=service.depends_on, stop_timeout=service.stop_timeout, settle=service.settle,
            init=service.init,
            group=(service.router_group or env.router.group) if routed and env.router else None,
        ))
    return specs


def _text(value: str | int | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def render_services(loaded: LoadedConfig, release: ReleaseInfo) -> int:
    """Render every service's env for every container target (``slipway validate``); the count."""
    count = 0
    for name, env in loaded.project.environments.items():
        blanks = dict.fromkeys(env.secrets, "")
        for target in env.targets:
            if isinstance(target, ContainerTargetSpec):
                count += len(service_specs(loaded, name, target, blanks, release))
    return count
