"""Who may do what on which environment: roles, actions and the one rule that decides (pure, no I/O).

A user holds roles on environment patterns (``production``, ``stag*``, ``*``). An action on an
environment is allowed when one of the user's grants names a role that permits the action and a pattern
that matches the environment. Actions on no particular environment (reading, managing users) match a
grant of any pattern for reading, and only ``*`` for the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from fnmatch import fnmatchcase


class Action(StrEnum):
    """What a request wants to do."""

    VIEW = "view"
    DEPLOY = "deploy"  # start a run, promote, resume
    APPROVE = "approve"  # approve or reject a gate
    ROLLBACK = "rollback"
    UNLOCK = "unlock"
    ADMIN = "admin"  # users, tokens, grants, breakers


class Role(StrEnum):
    """What a grant gives."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    APPROVER = "approver"
    ADMIN = "admin"


PERMITS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.VIEW}),
    Role.DEPLOYER: frozenset({Action.VIEW, Action.DEPLOY, Action.ROLLBACK, Action.UNLOCK}),
    Role.APPROVER: frozenset({Action.VIEW, Action.APPROVE}),
    Role.ADMIN: frozenset(Action),
}


def allows(grants: Iterable[tuple[str, str]], action: Action, environment: str | None = None) -> bool:
    """Whether ``grants`` ((role, environment pattern) pairs) permit ``action`` on ``environment``."""
    for role_name, pattern in grants:
        try:
            role = Role(role_name)
        except ValueError:
            continue  # a role this version does not know grants nothing
        if action not in PERMITS[role]:
            continue
        if environment is None:
            if action is Action.VIEW or pattern == "*":
                return True
        elif fnmatchcase(environment, pattern):
            return True
    return False


def roles_text() -> str:
    """The roles and what they permit, for error hints and --help."""
    return "; ".join(f"{r.value}: {', '.join(sorted(a.value for a in PERMITS[r]))}" for r in Role)
