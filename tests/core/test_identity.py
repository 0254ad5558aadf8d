"""Who acts, resolved from settings: the login plus git's identity, asked lazily; the ``identity.require``
policy refuses ``--as`` and SLIPWAY_USER (not a user a server authenticated) when the actor is first read."""

from __future__ import annotations

import getpass
import os
import subprocess
from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.errors import ConfigError, GateError
from slipway.model.config import IdentityPolicy
from slipway.services.settings import Settings

pytestmark = pytest.mark.timeout(60)
REQUIRED = IdentityPolicy(require=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository whose config is its own: no global or system config reaches it."""
    root = tmp_path / "proj"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True, timeout=30)
    return root


def environ(repo: Path, **extra: str) -> dict[str, str]:
    home = repo.parent / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", **extra}


def git_config(repo: Path, key: str, value: str) -> None:
    subprocess.run(["git", "-C", str(repo), "config", key, value], check=True, timeout=30)


def login() -> str:
    return f"{getpass.getuser()}@{os.uname().nodename}"


def test_the_actor_is_the_login_and_git_identity_asked_when_first_read(repo: Path) -> None:
    settings = Settings.resolve(root=repo, config=None, environ=environ(repo))
    git_config(repo, "user.name", "Alice Doe")  # after resolving: git is asked when the actor is read
    git_config(repo, "user.email", "alice@example.com")
    assert settings.actor == f"{login()} (git: Alice Doe <alice@example.com>)"
    git_config(repo, "user.email", "bob@example.com")
    assert settings.actor == f"{login()} (git: Alice Doe <alice@example.com>)"  # asked once per command


def test_without_a_git_identity_the_actor_is_the_login(repo: Path) -> None:
    assert Settings.resolve(root=repo, config=None, environ=environ(repo)).actor == login()


def test_approvers_match_the_login_name_and_the_git_email_in_any_case(repo: Path) -> None:
    git_config(repo, "user.email", "Alice@Example.com")
    identity = Settings.resolve(root=repo, config=None, environ=environ(repo)).identity
    assert identity.answers_to(["alice@example.com"])
    assert identity.answers_to([getpass.getuser()]) and identity.answers_to([login()])
    assert not identity.answers_to(["bob@example.com", "alice"])


def test_authenticated_actor_beats_flag_beats_env_beats_login(repo: Path) -> None:
    env = environ(repo, SLIPWAY_USER="env-user")
    assert Settings.resolve(root=repo, config=None, environ=env, actor="auth", as_override="flag").actor == "auth"
    assert Settings.resolve(root=repo, config=None, environ=env, as_override="flag").actor == "flag"
    assert Settings.resolve(root=repo, config=None, environ=env).actor == "env-user"


@pytest.mark.parametrize(("flag", "env", "said"), [("bob", {}, "--as bob"), (None, {"SLIPWAY_USER": "bob"}, "SLIPWAY_USER=bob")])
def test_the_policy_refuses_an_override_when_the_actor_is_read(
    repo: Path, flag: str | None, env: dict[str, str], said: str
) -> None:
    git_config(repo, "user.email", "alice@example.com")
    settings = Settings.resolve(
        root=repo, config=None, environ=environ(repo, **env), as_override=flag, identity=REQUIRED,
        config_path=repo / "slipway.yml",
    )
    assert settings.identity.quick_actor == login()  # what opening the store records: never the refused name
    with pytest.raises(GateError) as refused:
        _ = settings.actor
    assert f"{said} is refused: {repo / 'slipway.yml'} requires identity (identity.require)" in refused.value.message
    assert "unset SLIPWAY_USER" in refused.value.hint and refused.value.exit_code == 9


def test_the_policy_needs_a_git_email_and_says_how_to_set_it(repo: Path) -> None:
    git_config(repo, "user.name", "Alice Doe")
    settings = Settings.resolve(root=repo, config=None, environ=environ(repo), identity=REQUIRED)
    with pytest.raises(GateError) as refused:
        _ = settings.actor
    assert "git has no user.email configured" in refused.value.message
    assert "git config user.email" in refused.value.hint
    git_config(repo, "user.email", "alice@example.com")  # the next command finds it
    settings = Settings.resolve(root=repo, config=None, environ=environ(repo), identity=REQUIRED)
    assert settings.actor == f"{login()} (git: Alice Doe <alice@example.com>)"


def test_a_user_a_server_authenticated_is_not_refused_by_the_policy(repo: Path) -> None:
    settings = Settings.resolve(
        root=repo, config=None, environ=environ(repo, SLIPWAY_USER="mallory"), actor="alice", identity=REQUIRED
    )
    assert settings.actor == "alice" and settings.identity.answers_to(["alice"])


BASE = """\
name: p
artifact: {paths: [app]}
environments: {dev: {targets: [{kind: local, name: d, path: t}]}}
pipeline: [{name: build, kind: build}]
"""


def test_identity_require_is_a_top_level_key_off_by_default() -> None:
    assert parse_config(BASE, path=Path("/p/slipway.yml")).project.identity.require is False
    assert parse_config(BASE + "identity: {require: true}\n", path=Path("/p/slipway.yml")).project.identity.require
    with pytest.raises(ConfigError) as bad:
        parse_config(BASE + "identity: {requires: true}\n", path=Path("/p/slipway.yml"))
    assert "did you mean 'require'" in bad.value.hint
