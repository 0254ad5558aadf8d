"""Which environments a project defines: the one check every command that names an environment makes."""

from __future__ import annotations

from slipway.errors import ConfigError
from slipway.model.config import Environment, Project


def require_environment(project: Project, name: str) -> Environment:
    """The environment ``name`` of ``project``; ConfigError (exit 2) naming the defined ones if there is none."""
    environment = project.environments.get(name)
    if environment is None:
        raise ConfigError(
            f"environment {name!r} is not defined", hint="defined: " + ", ".join(sorted(project.environments))
        )
    return environment
