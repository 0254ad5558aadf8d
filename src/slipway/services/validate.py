"""``slipway validate``: everything that can be checked without running anything."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slipway.config import LoadedConfig
from slipway.engine.planner import ReleaseInfo
from slipway.engine.template import render
from slipway.errors import ConfigError
from slipway.model.containers import ImageArtifactSpec
from slipway.services.app import App
from slipway.services.build_cache import check_key_files
from slipway.services.checks import render_all
from slipway.services.releases import environment_url, host_views, make_plan
from slipway.services.review_env import check_review
from slipway.services.secrets import reached_environments, require_secrets
from slipway.services.source import head_difference


@dataclass(frozen=True)
class Validation:
    """The outcome of ``slipway validate``: which file, what it holds, and a warning about HEAD's copy."""

    path: Path
    summary: str
    warning: str | None


def validate(app: App) -> Validation:
    """Check the working tree's slipway.yml (:func:`validate_project`, secrets from ``app.environ``) and
    say when the commit a run would use (HEAD) has a different slipway.yml; ConfigError when invalid."""
    summary = validate_project(app.config, environ=app.environ)
    return Validation(app.config.path, summary, head_difference(app))


def validate_project(loaded: LoadedConfig, *, environ: Mapping[str, str] | None = None) -> str:
    """Render every hook for every target (and blue/green slot) of every environment, and every stage command.

    The schema was already checked when the file was loaded; this catches undefined template variables
    (``{{ vars.prot }}``) before a deployment would. With ``environ``, every secret of every environment
    the pipeline reaches must resolve from it (the values are read, never printed).
    """
    project = loaded.project
    placeholder = ReleaseInfo("20000101T000000Z-000000000000", "sha256:" + "0" * 64, "0" * 40)
    summary_of = loaded
    loaded = check_review(loaded, placeholder)  # with review-1 among the environments, when there is a template
    for name in loaded.project.environments:
        try:
            for hosts in host_views(loaded, name):  # blue/green: the hooks of each slot
                make_plan(loaded, name, placeholder, hosts=hosts)
        except ConfigError as exc:
            raise ConfigError(
                f"environment {name}: {exc.reason}", file=str(loaded.path), key_path=exc.key_path, hint=exc.hint
            ) from None
    check_key_files(loaded, loaded.root, where="the project directory")  # a run checks its commit's
    build = getattr(project.artifact, "build", ())  # an image artifact is built by its Containerfile
    for i, command in enumerate(build if isinstance(build, tuple) else ()):
        try:
            render(command, {"project": project.name, "commit": placeholder.commit}, where=f"artifact.build[{i}]")
        except ConfigError as exc:
            raise loaded.error(exc.reason, ("artifact", "build", i), hint=exc.hint) from None
    for i, stage in enumerate(project.pipeline):
        context: dict[str, object] = {"project": project.name, "commit": placeholder.commit, "vars": {}}
        if stage.environment:
            env = project.environments[stage.environment]
            url = environment_url(project, stage.environment) or ""
            context.update(environment={"name": stage.environment, "url": url}, vars=env.vars)
        for j, command in enumerate(stage.run):
            try:
                render(command, context, where=f"pipeline[{i}].run[{j}]")
            except ConfigError as exc:
                raise loaded.error(exc.reason, ("pipeline", i, "run", j), hint=exc.hint) from None
    checks = render_all(loaded, placeholder)  # an undefined variable in a check fails here, with its line
    if loaded.project.deploy.services:
        from slipway.services.host_services import render_host_services

        render_host_services(loaded, placeholder)  # a service's command, env and port, for every host
    if isinstance(project.artifact, ImageArtifactSpec):
        from slipway.services.containers import render_services  # imports the docker SDK: images only

        render_services(loaded, placeholder)  # and one in a service's env
    if environ is not None:
        require_secrets(loaded, reached_environments(project), environ=environ, what="a run of this pipeline")
    project = summary_of.project
    secrets = sum(len(e.secrets) for e in project.environments.values())
    return (
        f"{len(project.environments)} environment(s), {len(project.pipeline)} stage(s), "
        f"{sum(len(e.targets) for e in project.environments.values())} target(s), {secrets} secret reference(s), {checks} check(s)"
    )
