"""Settings and their one precedence rule: defaults < slipway.yml < SLIPWAY_* variables < flags."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from slipway.model.config import StoreSpec

ENV_DATABASE_URL = "SLIPWAY_DATABASE_URL"
ENV_ARTIFACT_DIR = "SLIPWAY_ARTIFACT_DIR"
ENV_USER = "SLIPWAY_USER"
STATE_DIR = ".slipway"


@dataclass(frozen=True)
class Settings:
    """Where state lives and who is acting."""

    database_url: str
    artifact_dir: Path
    actor: str
    state_dir: Path

    @classmethod
    def resolve(
        cls,
        *,
        root: Path,
        config: StoreSpec | None,
        environ: Mapping[str, str],
        database_url: str | None = None,
        artifact_dir: str | None = None,
        actor: str | None = None,
    ) -> Settings:
        """Apply the precedence rule; relative paths are relative to the project root."""
        state = root / STATE_DIR
        config = config or StoreSpec()
        url = database_url or environ.get(ENV_DATABASE_URL) or config.url or f"sqlite:///{state / 'state.db'}"
        adir = artifact_dir or environ.get(ENV_ARTIFACT_DIR) or config.artifacts or str(state / "artifacts")
        who = actor or environ.get(ENV_USER) or _login_name(environ)
        path = Path(adir)
        return cls(
            database_url=url, artifact_dir=path if path.is_absolute() else root / path, actor=who, state_dir=state
        )


def _login_name(environ: Mapping[str, str]) -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = environ.get("USER", "unknown")
    return f"{name}@{os.uname().nodename}"
