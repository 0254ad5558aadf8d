"""Deployment strategies as slipway.yml states them: frozen, validated values and nothing else.

A strategy says how a release reaches a fleet: ``all_at_once``, ``rolling`` batches, a ``canary`` batch
that bakes before the rest rolls, or ``blue_green`` slots. A :class:`Batch` is one step of a plan.
The batch arithmetic that turns a strategy and a fleet into batches is :mod:`slipway.engine.strategy`.
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

_PERCENT_RE = re.compile(r"^\s*(\d{1,3}(?:\.\d+)?)\s*%\s*$")
_COUNT_RE = re.compile(r"^\s*(\d+)\s*$")


class StrategyKind(StrEnum):
    """How a release reaches the hosts of an environment."""

    ALL_AT_ONCE = "all_at_once"
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blue_green"


class BatchKind(StrEnum):
    """What a batch is for: the canary, one of the rolling batches, or the whole fleet at once."""

    CANARY = "canary"
    BATCH = "batch"
    ALL = "all"


class OnSuccess(StrEnum):
    """What a canary does once it baked healthily."""

    CONTINUE = "continue"
    PAUSE = "pause"


def _parse_host_share(value: object) -> int | str:
    """A number of hosts (int >= 1) or a percentage string in (0%, 100%], normalised to ``'N%'``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"expected a whole number of hosts or a percentage like '25%', got {value!r}"
        )
    if isinstance(value, str):
        count = _COUNT_RE.match(value)
        if count:
            value = int(count.group(1))
        else:
            percent = _PERCENT_RE.match(value)
            if percent is None:
                raise ValueError(
                    f"expected a whole number of hosts or a percentage like '25%', got {value!r}"
                )
            share = Fraction(percent.group(1))
            if not 0 < share <= 100:
                raise ValueError(f"a percentage must be above 0% and at most 100%, got {value!r}")
            return f"{percent.group(1)}%"
    if value < 1:
        raise ValueError(f"must be at least 1 host, got {value}")
    return value


#: A number of hosts (``3``) or a share of the fleet (``"25%"``).
HostShare: TypeAlias = Annotated[int | str, BeforeValidator(_parse_host_share)]


def _parse_fraction(value: object) -> float | str:
    """A fraction of hosts in (0, 1], or a percentage string; an int >= 1 is a plain count."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a fraction like 0.5, a percentage like '50%' or a count, got {value!r}")
    if isinstance(value, str):
        return _parse_host_share(value)
    if isinstance(value, int):
        return _parse_host_share(value)
    if not 0 < value <= 1 or math.isnan(value):
        raise ValueError(f"a fraction of hosts must be above 0 and at most 1, got {value!r}")
    return value


#: A count of hosts (int), a fraction of them (float in (0, 1]) or a percentage (``"50%"``).
Threshold: TypeAlias = Annotated[int | float | str, BeforeValidator(_parse_fraction)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AllAtOnce(_Frozen):
    """Every host at the same time: fastest, with downtime if the release needs a restart."""

    kind: Literal[StrategyKind.ALL_AT_ONCE] = StrategyKind.ALL_AT_ONCE


class Rolling(_Frozen):
    """Hosts in consecutive batches; the rest keep serving."""

    kind: Literal[StrategyKind.ROLLING] = StrategyKind.ROLLING
    #: Hosts per batch: a count or a percentage (rounds up, at least 1).
    batch_size: HostShare = 1
    #: Most hosts out of service at once (rounds down, at least 1); caps the batch size. None: no cap.
    max_unavailable: HostShare | None = None
    #: Seconds to wait after each batch except the last.
    pause: float = Field(default=0.0, ge=0)


class Canary(_Frozen):
    """A canary batch that bakes under health checks, then the rest in rolling batches."""

    kind: Literal[StrategyKind.CANARY] = StrategyKind.CANARY
    #: Hosts in the canary batch: a count or a percentage (rounds up, at least 1).
    canary_hosts: HostShare = 1
    #: Seconds the canary runs under checks before the rest proceeds.
    bake_time: float = Field(default=300.0, ge=0)
    #: Seconds between health checks while baking.
    check_interval: float = Field(default=10.0, gt=0)
    #: After a healthy bake: go on, or pause for an explicit promotion.
    on_success: OnSuccess = OnSuccess.CONTINUE
    #: The rest, as in ``rolling``.
    batch_size: HostShare = 1
    max_unavailable: HostShare | None = None
    pause: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _interval_fits_bake(self) -> Canary:
        if self.bake_time and self.check_interval > self.bake_time:
            raise ValueError(
                f"check_interval ({self.check_interval}s) is longer than bake_time ({self.bake_time}s): "
                "the canary would never be checked while baking"
            )
        return self


class BlueGreen(_Frozen):
    """Deploy to the idle slot, then switch the router; the old slot stays for instant rollback."""

    kind: Literal[StrategyKind.BLUE_GREEN] = StrategyKind.BLUE_GREEN
    #: The two slot names, as the router knows them.
    slots: tuple[str, str] = ("blue", "green")
    #: Keep the old slot's processes running after the switch (rollback is a switch back).
    keep_old_warm: bool = True
    #: Variables per slot, overlaid on the environment's and the host's (e.g. each slot's ``port``).
    slot_vars: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _two_distinct_names(self) -> BlueGreen:
        for slot in self.slots:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", slot):
                raise ValueError(f"slot name {slot!r} must be letters, digits, '_' or '-'")
        if self.slots[0] == self.slots[1]:
            raise ValueError(f"the two slots need different names, got {self.slots[0]!r} twice")
        unknown = sorted(set(self.slot_vars) - set(self.slots))
        if unknown:
            raise ValueError(f"slot_vars names slot(s) {', '.join(unknown)}; the slots are {', '.join(self.slots)}")
        return self


#: Any strategy; ``kind`` picks the model.
Strategy: TypeAlias = Annotated[AllAtOnce | Rolling | Canary | BlueGreen, Field(discriminator="kind")]
STRATEGY_ADAPTER: TypeAdapter[AllAtOnce | Rolling | Canary | BlueGreen] = TypeAdapter(Strategy)


def parse_strategy(data: object) -> AllAtOnce | Rolling | Canary | BlueGreen:
    """Validate a ``strategy:`` mapping; raises pydantic.ValidationError with the key path."""
    return STRATEGY_ADAPTER.validate_python(data)


class CircuitBreakerPolicy(_Frozen):
    """Stop (and by default roll back) a deployment once too many hosts failed.

    The threshold is ``clamp(ceil(threshold * n), min_threshold, max_threshold)``, capped at ``n``.
    """

    #: A fraction (0.5), a percentage ("50%") or a fixed count of hosts (3).
    threshold: Threshold = 0.5
    min_threshold: int = Field(default=3, ge=1)
    max_threshold: int = Field(default=200, ge=1)
    auto_rollback: bool = True

    @model_validator(mode="after")
    def _bounds_are_consistent(self) -> CircuitBreakerPolicy:
        if self.min_threshold > self.max_threshold:
            raise ValueError(
                f"min_threshold ({self.min_threshold}) is above max_threshold ({self.max_threshold})"
            )
        count = self.threshold
        if isinstance(count, int) and not self.min_threshold <= count <= self.max_threshold:
            # A fixed count is meant literally: clamping it silently would change what the user wrote.
            raise ValueError(
                f"threshold {count} is outside [min_threshold, max_threshold] = "
                f"[{self.min_threshold}, {self.max_threshold}]; change those bounds too"
            )
        return self


class Batch(_Frozen):
    """One step of a plan: these hosts together, then bake and/or pause."""

    index: int = Field(ge=0)
    kind: BatchKind
    hosts: tuple[str, ...]
    #: Seconds to wait after this batch (0 for the last).
    pause_after: float = Field(default=0.0, ge=0)
    #: Seconds to run under health checks before the next batch (canary only).
    bake_time: float = Field(default=0.0, ge=0)
    #: Seconds between health checks while baking.
    check_interval: float = Field(default=0.0, ge=0)
    #: Stop after this batch until someone promotes the deployment (canary with on_success: pause).
    wait_for_approval: bool = False
