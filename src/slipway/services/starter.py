"""``slipway init``: the commented slipway.yml a project starts from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from slipway.config import CONFIG_NAME
from slipway.errors import ConfigError


def write_starter_config(directory: Path, *, force: bool = False) -> Path:
    """Write the starter slipway.yml into ``directory`` and return its path; ConfigError if one exists
    (unless ``force``)."""
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="pass --force to overwrite it")
    text = resources.files("slipway").joinpath("templates/slipway.yml").read_text()
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
