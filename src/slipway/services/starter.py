"""``slipway init``: look at the project, write a slipway.yml for its kind, keep ``.slipway/`` out of git.

The detection and the text are pure (:mod:`slipway.model.project_kind`, :mod:`slipway.model.starter`); this
module only reads the project's files and writes the two files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slipway.config import CONFIG_NAME
from slipway.errors import ConfigError
from slipway.model.project_kind import FILES_READ, Detection, detect
from slipway.model.starter import render_config, server_advice

#: The line init makes sure .gitignore has: the state, artifacts, workspaces and local deploy roots.
IGNORED = ".slipway/"
#: A file larger than this is not read for detection (a lock file only needs to exist).
MAX_READ = 1 << 20


@dataclass(frozen=True)
class InitResult:
    """What ``slipway init`` did: the config it wrote, what it detected, what it did to .gitignore."""

    config: Path
    detection: Detection
    #: ``created``, ``appended`` or ``unchanged``.
    gitignore: str

    @property
    def advice(self) -> tuple[str, ...]:
        """What the user should check or change in the written config."""
        return self.detection.advice + server_advice(self.detection)


def read_project_files(directory: Path) -> dict[str, str]:
    """The text of each of :data:`FILES_READ` that exists in ``directory`` (a large one: its name only)."""
    files: dict[str, str] = {}
    for name in FILES_READ:
        path = directory / name
        if path.is_file():
            files[name] = path.read_text(errors="replace") if path.stat().st_size <= MAX_READ else ""
    return files


def ignore_state(directory: Path) -> str:
    """Add ``.slipway/`` to the project's .gitignore once: ``created``, ``appended`` or ``unchanged``."""
    path = directory / ".gitignore"
    if not path.exists():
        path.write_text(f"{IGNORED}\n")
        return "created"
    text = path.read_text(errors="replace")
    if any(line.strip().strip("/") == ".slipway" for line in text.splitlines()):
        return "unchanged"
    path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + f"{IGNORED}\n")
    return "appended"


def init_project(directory: Path, *, force: bool = False) -> InitResult:
    """Write a slipway.yml for the project in ``directory``; ConfigError if one exists (unless ``force``)."""
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="pass --force to overwrite it")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory", hint="name your project's directory")
    directory.mkdir(parents=True, exist_ok=True)
    detection = detect(read_project_files(directory), directory_name=directory.resolve().name)
    target.write_text(render_config(detection))
    return InitResult(target, detection, ignore_state(directory))
