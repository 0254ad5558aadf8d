"""Accounts of ``slipway serve``: users with argon2 password hashes, API tokens and web sessions kept only
as SHA-256 digests, and role grants per environment (the rule itself is model/access.py).

The CLI manages accounts directly in the state store (``slipway users ...``); the server authenticates
each request here and passes the user's name to the services as the actor, so every approval, rejection,
rollback and unlock records who did it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slipway.errors import AccessDenied, ConfigError, NotAuthenticated, NotFound, StateError
from slipway.model.access import Action, Role, allows, roles_text
from slipway.model.config import Project
from slipway.model.records import RunRecord, UserRecord
from slipway.model.states import StageKind, State

if TYPE_CHECKING:
    from slipway.store.repository import Store

USER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TOKEN_PREFIX = "slw_"
#: How long a browser stays signed in.
SESSION_TTL = 12 * 3600.0
MIN_PASSWORD = 12


@dataclass(frozen=True)
class Principal:
    """Who a request acts as, and what they may do."""

    name: str
    grants: tuple[tuple[str, str], ...]

    def may(self, action: Action, environment: str | None = None) -> bool:
        """Whether this user may do ``action`` on ``environment``."""
        return allows(self.grants, action, environment)

    def may_each(self, action: Action, environments: Sequence[str]) -> bool:
        """Whether this user may do ``action`` on every one of ``environments`` (none: on no particular one)."""
        return all(self.may(action, e) for e in environments) if environments else self.may(action)

    def require_each(self, action: Action, environments: Sequence[str]) -> None:
        """:meth:`require` for every one of ``environments`` (none: on no particular one)."""
        if not environments:
            self.require(action)
        for environment in environments:
            self.require(action, environment)

    def require(self, action: Action, environment: str | None = None) -> None:
        """Raise AccessDenied, naming the missing role, unless the user may."""
        if not self.may(action, environment):
            where = f" on {environment}" if environment else ""
            raise AccessDenied(
                f"{self.name} may not {action.value}{where}",
                hint=f"an admin can grant a role: slipway users grant {self.name} ROLE --env ENV ({roles_text()})",
            )


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError as exc:  # the server extra is not installed
        raise ConfigError(
            "accounts need argon2-cffi, which this installation lacks",
            hint="install the server extra: pip install 'slipway-deploy[server]'",
        ) from exc
    return PasswordHasher()


def digest(secret: str) -> str:
    """The SHA-256 of a token or session id: what the store keeps (both are 256-bit random)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def add_user(store: Store, name: str, password: str, *, roles: tuple[tuple[str, str], ...] = (), actor: str) -> None:
    """Create a user with a password (hashed with argon2) and roles."""
    if not USER_RE.match(name):
        raise ConfigError(
            f"{name!r} is not a valid user name",
            hint="use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (at most 63)",
        )
    if store.user(name) is not None:
        raise StateError(f"user {name} exists", hint=f"change its password with 'slipway users passwd {name}'")
    check_password(password)
    for role, _pattern in roles:
        check_role(role)
    store.add_user(name, _hasher().hash(password), actor=actor)
    for role, pattern in roles:
        store.grant(name, role, pattern, actor=actor)


def check_password(password: str) -> None:
    """Refuse a password too short to resist guessing."""
    if len(password) < MIN_PASSWORD:
        raise ConfigError(
            f"the password is {len(password)} characters long; at least {MIN_PASSWORD} are needed",
            hint="use a passphrase of several words",
        )


def check_role(role: str) -> Role:
    """The role called ``role``, or a ConfigError naming the roles."""
    try:
        return Role(role)
    except ValueError:
        raise ConfigError(f"no role {role!r}", hint=f"roles: {roles_text()}") from None


def require_user(store: Store, name: str) -> UserRecord:
    """The user, or StateError naming it."""
    user = store.user(name)
    if user is None:
        raise NotFound(f"no user {name}", hint="list them with 'slipway users list'")
    return user


def set_password(store: Store, name: str, password: str, *, actor: str) -> None:
    """Replace a user's password; their browsers are signed out."""
    require_user(store, name)
    check_password(password)
    store.set_password_hash(name, _hasher().hash(password), actor=actor)


def sign_in(store: Store, name: str, password: str) -> Principal:
    """Check a password; NotAuthenticated with one message for a wrong name or password alike."""
    stored = store.password_hash(name)
    hasher = _hasher()
    if stored is None:
        hasher.hash(password)  # the same work as a real check, so a missing user takes as long
        raise NotAuthenticated("wrong user name or password")
    try:
        hasher.verify(stored, password)
    except Exception:  # argon2's VerifyMismatchError, InvalidHashError ...
        raise NotAuthenticated("wrong user name or password") from None
    if hasher.check_needs_rehash(stored):
        store.set_password_hash(name, hasher.hash(password), actor="")
    return principal(store, name)


def principal(store: Store, name: str) -> Principal:
    """The user as a Principal (NotAuthenticated if it is gone or disabled)."""
    user = store.user(name)
    if user is None or user.disabled:
        raise NotAuthenticated(f"user {name} cannot sign in")
    return Principal(user.name, user.grants)


def create_token(store: Store, name: str, label: str, *, actor: str) -> str:
    """Make an API token for ``name``; the token is returned once and only its SHA-256 kept."""
    require_user(store, name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.add_token(name, label, digest(token), actor=actor)
    return token


def authenticate_token(store: Store, token: str) -> Principal:
    """The user of an API token (NotAuthenticated for an unknown or revoked one)."""
    user = store.token_user(digest(token)) if token.startswith(TOKEN_PREFIX) else None
    if user is None:
        raise NotAuthenticated("the API token is not valid", hint="make one with 'slipway users token NAME'")
    return principal(store, user)


def open_session(store: Store, name: str) -> tuple[str, str]:
    """Start a browser session: (the cookie's value, its CSRF token)."""
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    store.add_session(digest(session_id), name, csrf, ttl=SESSION_TTL)
    return session_id, csrf


def session_user(store: Store, session_id: str) -> tuple[Principal, str] | None:
    """(the user, the CSRF token) of a live session, or None."""
    found = store.session(digest(session_id))
    if found is None:
        return None
    name, csrf = found
    try:
        return principal(store, name), csrf
    except NotAuthenticated:
        return None


def environments_ahead(stages: Sequence[tuple[StageKind, str | None]], start: int = 0) -> list[str]:
    """The environments a run deploys from stage ``start`` on before it reaches an approval gate: what
    starting (or resuming) it changes without anybody else's say."""
    out: list[str] = []
    for kind, environment in stages[start:]:
        if kind is StageKind.APPROVAL:
            break
        if kind is StageKind.DEPLOY and environment and environment not in out:
            out.append(environment)
    return out


def pipeline_environments(project: Project) -> list[str]:
    """What starting a pipeline run deploys before its first gate."""
    return environments_ahead([(s.kind, s.environment) for s in project.pipeline])


def run_environments_ahead(run: RunRecord) -> list[str]:
    """What driving ``run`` on from its first unfinished stage deploys before the next gate; for a run
    waiting at a gate, what approving it lets deploy (a parked canary: its own environment)."""
    stages = [(s.kind, s.environment) for s in run.stages]
    waiting = next((s for s in run.stages if s.state is State.WAITING), None)
    if waiting is not None:
        if waiting.kind is StageKind.DEPLOY and waiting.environment:
            return [waiting.environment]
        return environments_ahead(stages, waiting.index + 1)
    first = next((s.index for s in run.stages if not s.state.is_final), len(run.stages))
    return environments_ahead(stages, first)
