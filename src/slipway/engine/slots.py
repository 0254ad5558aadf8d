"""Blue/green slots, pure: where a slot lives on a host, which slot is idle, what a switch back reaches.

Every host of a blue/green environment keeps two independent release layouts, one per slot, under
``<root>/slots/<slot>/`` (``releases/``, ``shared/``, ``current``); both share the host's object store. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SLOTS_DIR = "slots"


@dataclass(frozen=True)
class SlotInfo:
    """One blue/green slot as templates see it: ``{{ slot.name }}``, ``{{ slot.root }}``, its vars."""

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)


def slot_root(root: str, slot: str) -> str:
    """The deploy root of ``slot`` on a host whose deploy root is ``root``."""
    return f"{root.rstrip('/')}/{SLOTS_DIR}/{slot}"


def other_slot(slots: Sequence[str], slot: str) -> str:
    """The slot of the two that is not ``slot``."""
    first, second = slots
    return second if slot == first else first


def idle_slot(slots: Sequence[str], active: str | None) -> str:
    """Where the next release goes: the slot not serving; the first slot by name when none serves yet.

    The first by name because that is the slot a router activates when it first learns both slots, so
    the first deployment's switch never sends traffic to a slot that is not running.
    """
    if active in slots:
        return other_slot(slots, active)  # type: ignore[arg-type]
    return min(slots)


def warm_mismatches(warm: Mapping[str, str | None], release: str) -> dict[str, str | None]:
    """Hosts whose warm slot does not hold ``release`` (host -> what it holds); empty: a switch reaches it."""
    return {host: held for host, held in warm.items() if held != release}


def warm_release(warm: Mapping[str, str | None]) -> str | None:
    """The release every host's warm slot holds, or None when they differ or a slot is empty."""
    held = set(warm.values())
    if len(held) != 1:
        return None
    return next(iter(held))
