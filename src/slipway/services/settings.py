"""Settings and their one precedence rule: defaults < slipway.yml < SLIPWAY_* variables < flags.

Who acts has its own order: a user a server authenticated (``actor=``) beats ``--as``, which beats
SLIPWAY_USER, which beats the login at this host plus git's ``user.name``/``user.email``. When
slipway.yml sets ``identity.require``, ``--as`` and SLIPWAY_USER are refused and git must know an email,
by the first step of a command that records who acted. Git is asked then, once: ``status`` never asks it.
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from slipway.errors import GateError
from slipway.model.config import IdentityPolicy, StoreSpec

ENV_DATABASE_URL = "SLIPWAY_DATABASE_URL"
ENV_ARTIFACT_DIR = "SLIPWAY_ARTIFACT_DIR"
ENV_USER = "SLIPWAY_USER"
STATE_DIR = ".slipway"
#: Seconds ``git config`` may take before the git identity counts as unknown.
GIT_TIMEOUT = 10.0


@dataclass(frozen=True)
class GitIdentity:
    """git's ``user.name`` and ``user.email`` for the project repository (either may be unset)."""

    name: str | None = None
    email: str | None = None

    def describe(self) -> str:
        """``Alice Doe <alice@example.com>``, or the part that is set; empty when neither is."""
        return " ".join(p for p in (self.name, f"<{self.email}>" if self.email else None) if p)


@dataclass(frozen=True, eq=False)
class Identity:
    """Who acts: a given name, or the login at this host with git's identity (git asked on first use).

    slipway.yml's ``identity.require`` is enforced here, when what a command records first asks who
    acts: commands that record nothing (``status``, ``history``) run whatever ``--as`` says.
    """

    #: The OS user at this host: ``alice@build-host``.
    login: str
    #: A name given for whoever acts: a server's authenticated user, ``--as`` or SLIPWAY_USER.
    named: str | None = None
    #: Where ``named`` came from when it is an override the policy refuses: ``--as bob``, ``SLIPWAY_USER=bob``
    #: (empty for a user a server authenticated).
    override: str = ""
    #: The project directory: git is asked there (None: git is not asked).
    root: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict)
    #: The slipway.yml whose ``identity.require`` is set; None when identity is not required.
    required_by: Path | None = None

    @cached_property
    def git(self) -> GitIdentity:
        """git's identity in the project repository (one ``git config`` process, the first time only)."""
        return GitIdentity() if self.root is None else read_git_identity(self.root, self.environ)

    @cached_property
    def actor(self) -> str:
        """What is recorded as who acted: ``alice@build-host (git: Alice Doe <alice@example.com>)``.

        A GateError, before anything is recorded, when slipway.yml requires identity and an override
        names someone, or git knows no ``user.email``.
        """
        if self.required_by is not None:
            self._check_policy(self.required_by)
        if self.named is not None:
            return self.named
        git = self.git.describe()
        return f"{self.login} (git: {git})" if git else self.login

    def _check_policy(self, required_by: Path) -> None:
        why = f"{required_by} requires identity (identity.require)"
        if self.override:
            raise GateError(
                f"{self.override} is refused: {why}, so Slipway records who acts as the login at this host "
                "and git's user.name and user.email",
                hint=f"drop --as and unset {ENV_USER}; to act for someone else, they run the command "
                "themselves (or approve on a Slipway server they log in to)",
            )
        if self.named is None and not self.git.email:
            raise GateError(
                f"git has no user.email configured in {self.root}, and {why}: Slipway records who acts as "
                f"{self.login} and git's identity",
                hint="set it: git config user.email YOU@EXAMPLE.COM (add --global for every repository)",
            )

    @property
    def quick_actor(self) -> str:
        """Who acts, without asking git nor refusing: for what any command may record on opening the store."""
        refused = self.required_by is not None and self.override
        return self.named if self.named is not None and not refused else self.login

    def answers_to(self, names: Iterable[str]) -> bool:
        """Whether one of ``names`` (an approvers list) means whoever acts: their name, login or git email."""
        wanted = set(names)
        if self.named is not None:
            return bool({self.actor, self.named.split("@")[0]} & wanted)
        if {self.actor, self.login, self.login.split("@")[0]} & wanted:
            return True
        email = self.git.email
        return email is not None and email.casefold() in {n.casefold() for n in wanted}


@dataclass(frozen=True)
class Settings:
    """Where state lives and who is acting."""

    database_url: str
    artifact_dir: Path
    state_dir: Path
    identity: Identity

    @property
    def actor(self) -> str:
        """Who acts, as recorded (:attr:`Identity.actor`); a GateError when slipway.yml's policy refuses it."""
        return self.identity.actor

    def authenticated(self, actor: str) -> Settings:
        """These settings acting as ``actor``, a user a server authenticated: recorded as given, never refused."""
        return replace(self, identity=replace(self.identity, named=actor, override=""))

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
        as_override: str | None = None,
        identity: IdentityPolicy | None = None,
        config_path: Path | None = None,
    ) -> Settings:
        """Apply the precedence rule; relative paths are relative to the project root.

        ``actor`` is a user the caller authenticated (a server's): recorded as given, never refused.
        ``as_override`` is the CLI's ``--as``: like SLIPWAY_USER, refused under ``identity.require`` when
        a command first records who acts.
        """
        state = root / STATE_DIR
        config = config or StoreSpec()
        url = database_url or environ.get(ENV_DATABASE_URL) or config.url or f"sqlite:///{state / 'state.db'}"
        adir = artifact_dir or environ.get(ENV_ARTIFACT_DIR) or config.artifacts or str(state / "artifacts")
        required_by = (config_path or root / "slipway.yml") if identity is not None and identity.require else None
        named, override = (actor, "") if actor else _override(as_override, environ)
        who = Identity(
            login=_login_name(environ), named=named, override=override, root=root, environ=environ,
            required_by=required_by,
        )
        path = Path(adir)
        return cls(
            database_url=url, artifact_dir=path if path.is_absolute() else root / path, state_dir=state, identity=who
        )


def _override(as_override: str | None, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """``--as`` or SLIPWAY_USER, the one in force, and how it was given (for a refusal's message)."""
    if as_override:
        return as_override, f"--as {as_override}"
    if environ.get(ENV_USER):
        return environ[ENV_USER], f"{ENV_USER}={environ[ENV_USER]}"
    return None, ""


def _login_name(environ: Mapping[str, str]) -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = environ.get("USER", "unknown")
    return f"{name}@{os.uname().nodename}"


def read_git_identity(root: Path, environ: Mapping[str, str]) -> GitIdentity:
    """git's ``user.name`` and ``user.email`` as the repository at ``root`` sees them (its own config first)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "config", "--get-regexp", r"^user\.(name|email)$"],
            capture_output=True, text=True, check=False, env=dict(environ), timeout=GIT_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git, or a hung one: the identity is unknown
        return GitIdentity()
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():  # 'user.email alice@example.com'; the last value wins, as in git
        key, _, value = line.partition(" ")
        if value.strip():
            found[key.lower()] = value.strip()
    return GitIdentity(name=found.get("user.name"), email=found.get("user.email"))
