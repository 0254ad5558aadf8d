"""One precedence rule: defaults < slipway.yml < SLIPWAY_* environment variables < command-line flags."""

from __future__ import annotations

from pathlib import Path

from slipway.model.config import StoreSpec
from slipway.services.settings import Settings

ROOT = Path("/proj")


def test_default_is_sqlite_in_dot_slipway() -> None:
    s = Settings.resolve(root=ROOT, config=None, environ={"SLIPWAY_USER": "ann"})
    assert s.database_url == "sqlite:////proj/.slipway/state.db"
    assert s.artifact_dir == ROOT / ".slipway/artifacts"


def test_config_beats_default() -> None:
    s = Settings.resolve(root=ROOT, config=StoreSpec(url="sqlite:///c.db", artifacts="arts"), environ={})
    assert s.database_url == "sqlite:///c.db"
    assert s.artifact_dir == ROOT / "arts"


def test_env_beats_config() -> None:
    s = Settings.resolve(
        root=ROOT,
        config=StoreSpec(url="sqlite:///c.db", artifacts="arts"),
        environ={"SLIPWAY_DATABASE_URL": "postgresql+psycopg://e/db", "SLIPWAY_ARTIFACT_DIR": "/e/arts"},
    )
    assert s.database_url == "postgresql+psycopg://e/db"
    assert s.artifact_dir == Path("/e/arts")


def test_flag_beats_env() -> None:
    s = Settings.resolve(
        root=ROOT,
        config=StoreSpec(url="sqlite:///c.db"),
        environ={"SLIPWAY_DATABASE_URL": "postgresql+psycopg://e/db", "SLIPWAY_USER": "env-user"},
        database_url="sqlite:///flag.db",
        actor="flag-user",
    )
    assert s.database_url == "sqlite:///flag.db"
    assert s.actor == "flag-user"


def test_actor_from_env_beats_login_name() -> None:
    assert Settings.resolve(root=ROOT, config=None, environ={"SLIPWAY_USER": "ann"}).actor == "ann"
