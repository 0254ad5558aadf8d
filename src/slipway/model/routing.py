"""The Router seam (pure values and a Protocol): what the engine asks of whatever sends traffic to the hosts.

A router knows *upstream groups* (one per application and environment). Each group has backends;
each backend may belong to a blue/green *slot*. The engine takes a backend out before touching its host
(``drain``), puts it back afterwards (``enable``), and flips slots for blue/green (``switch``).
Every method raises a :class:`slipway.errors.SlipwayError` subclass on failure, never a third-party error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Group and slot names become part of nginx identifiers and file names: keep them boring.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)


def check_name(kind: str, value: str) -> str:
    """Return ``value`` if it is a safe group/slot name, else raise ValueError saying why."""
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{kind} name {value!r} must be 1-63 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return value


class Backend(BaseModel):
    """One server behind a router: an address, a port and (for blue/green) the slot it belongs to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)
    slot: str | None = None
    weight: int = Field(default=1, ge=1, le=1000)
    down: bool = False

    @field_validator("host")
    @classmethod
    def _host_is_address_or_name(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", value):
                raise ValueError(f"backend host {value!r} is neither an IP address nor a host name") from None
        return value

    @field_validator("slot")
    @classmethod
    def _slot_is_a_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name("slot", value)

    @property
    def address(self) -> str:
        """``host:port`` as a router writes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class RouterState(BaseModel):
    """What a router is doing for one group right now."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    group: str
    backends: tuple[Backend, ...]
    #: The blue/green slot taking traffic, or None when the group does not use slots.
    active_slot: str | None = None

    @property
    def serving(self) -> tuple[Backend, ...]:
        """Backends that receive new requests: in the active slot (if any) and not down."""
        return tuple(
            b for b in self.backends
            if not b.down and (self.active_slot is None or b.slot == self.active_slot)
        )


@runtime_checkable
class Router(Protocol):
    """Moves traffic between backends of an upstream group."""

    async def set_upstream(self, group: str, backends: Sequence[Backend]) -> None:
        """Make ``backends`` the complete set of the group's servers and apply it."""
        ...

    async def drain(self, group: str, backend: Backend) -> None:
        """Take ``backend`` out of rotation, then wait until its in-flight requests finished (bounded)."""
        ...

    async def enable(self, group: str, backend: Backend) -> None:
        """Put ``backend`` back into rotation."""
        ...

    async def switch(self, group: str, slot: str) -> None:
        """Send all new requests of the group to the backends of ``slot`` (blue/green)."""
        ...

    async def current(self, group: str) -> RouterState:
        """Read back what the router is configured to do for ``group``."""
        ...
