"""The building blocks every slipway.yml model shares: the strict frozen base, names, secret references."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def env_names(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` when every key is an environment variable's name; ValueError naming the first that is not."""
    for key in value:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ValueError(f"variable name {key!r} must be a valid environment variable name")
    return value


class HintedValueError(ValueError):
    """A validator's ValueError that also says what to do: slipway.yml's error shows ``hint`` under it."""

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class Frozen(BaseModel):
    """Base of every config model: immutable and strict about keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SSHEndpoint(Frozen):
    """How a machine is reached over SSH: an ``ssh`` target, or the machine ``router.host`` names."""

    address: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    #: Private key file (default: the SSH agent and ~/.ssh keys); relative to slipway.yml.
    key: str | None = None
    #: known_hosts file the host key is checked against (default ~/.ssh/known_hosts). Never skipped.
    known_hosts: str | None = None
    #: Record the key of a host not yet in known_hosts instead of refusing it. Never the default.
    accept_new_host_keys: bool = False
    #: Seconds to wait for the connection.
    connect_timeout: float = Field(default=10, gt=0)


class SecretRef(Frozen):
    """Where a secret's value comes from; resolved at the last moment, never stored."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret names exactly one source: {env: VAR} or {file: PATH}")
        return self

    def describe(self) -> str:
        """Human wording of the reference, never the value."""
        return f"environment variable {self.env}" if self.env else f"file {self.file}"
