"""The pure batch planner of deployment strategies.

A strategy (the models live in :mod:`slipway.model.strategy`, re-exported here) says how a release
reaches a fleet: ``all_at_once``, ``rolling`` batches, a ``canary`` batch that bakes before the rest
rolls, or ``blue_green`` slots. :func:`plan_batches` turns a strategy and an
ordered list of hosts into batches; the runner executes them. Nothing here touches the disk, the network,
the clock or randomness, so a dry run prints exactly the plan the runner will execute.

Rounding (docs/strategies.md has worked examples), with ``n`` hosts:

* ``batch_size`` and ``canary_hosts`` as a percentage round **up**, minimum 1: ``ceil(p * n / 100)``.
  Rounding up never stalls a deployment on a fleet too small for the percentage.
* ``max_unavailable`` as a percentage rounds **down**, minimum 1: ``max(1, floor(p * n / 100))``.
  Rounding down never takes out more than the promised share; the minimum 1 lets a deployment progress.
* A batch never exceeds ``max_unavailable``: the effective batch size is
  ``min(batch_size, max_unavailable)``, and the canary batch is capped the same way.

The circuit breaker follows the ECS deployment circuit breaker: the failure threshold is
``clamp(ceil(threshold * n), min_threshold, max_threshold)`` (ECS: 0.5, 3, 200), and additionally never
more than ``n``, so a fleet smaller than ``min_threshold`` can still trip (when every host failed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from slipway.errors import ConfigError
from slipway.model.strategy import STRATEGY_ADAPTER as STRATEGY_ADAPTER
from slipway.model.strategy import AllAtOnce as AllAtOnce
from slipway.model.strategy import Batch as Batch
from slipway.model.strategy import BatchKind as BatchKind
from slipway.model.strategy import BlueGreen as BlueGreen
from slipway.model.strategy import Canary as Canary
from slipway.model.strategy import CircuitBreakerPolicy as CircuitBreakerPolicy
from slipway.model.strategy import HostShare as HostShare
from slipway.model.strategy import OnSuccess as OnSuccess
from slipway.model.strategy import Rolling as Rolling
from slipway.model.strategy import Strategy as Strategy
from slipway.model.strategy import StrategyKind as StrategyKind
from slipway.model.strategy import Threshold as Threshold
from slipway.model.strategy import parse_strategy as parse_strategy


def _share_of(share: int | float | str, host_count: int) -> Fraction | int:
    """The exact (unrounded) number of hosts a share means, or the count itself."""
    if isinstance(share, str):
        return Fraction(share.rstrip("%")) * host_count / 100
    if isinstance(share, float):
        return Fraction(str(share)) * host_count
    return share


def round_up(share: int | str, host_count: int) -> int:
    """Hosts meant by a batch size or canary share: percentages round up; at least 1."""
    return max(1, math.ceil(_share_of(share, host_count)))


def round_down(share: int | str, host_count: int) -> int:
    """Hosts meant by a max_unavailable share: percentages round down; at least 1."""
    return max(1, math.floor(_share_of(share, host_count)))


def batch_size(strategy: Rolling | Canary, host_count: int) -> int:
    """Hosts per rolling batch: ``min(batch_size rounded up, max_unavailable rounded down)``."""
    size = round_up(strategy.batch_size, host_count)
    return min(size, max_unavailable(strategy, host_count))


def max_unavailable(strategy: Rolling | Canary, host_count: int) -> int:
    """Most hosts out at once (rounds down, at least 1); unbounded (``host_count``) when unset."""
    if strategy.max_unavailable is None:
        return max(1, host_count)
    return round_down(strategy.max_unavailable, host_count)


def canary_size(strategy: Canary, host_count: int) -> int:
    """Hosts in the canary batch: rounded up, at least 1, at most max_unavailable and the fleet."""
    return min(round_up(strategy.canary_hosts, host_count), max_unavailable(strategy, host_count), host_count)


def plan_batches(
    hosts: Sequence[str], strategy: AllAtOnce | Rolling | Canary | BlueGreen
) -> tuple[Batch, ...]:
    """Split ``hosts`` (in order, each once) into the batches ``strategy`` asks for."""
    _check_hosts(hosts)
    if not hosts:
        return ()
    if isinstance(strategy, AllAtOnce | BlueGreen):
        # Blue/green deploys to the idle slot, which takes no traffic: all of it at once is safe.
        return (Batch(index=0, kind=BatchKind.ALL, hosts=tuple(hosts)),)
    batches: list[Batch] = []
    rest = list(hosts)
    if isinstance(strategy, Canary):
        size = canary_size(strategy, len(hosts))
        batches.append(
            Batch(
                index=0,
                kind=BatchKind.CANARY,
                hosts=tuple(rest[:size]),
                bake_time=strategy.bake_time,
                check_interval=strategy.check_interval,
                wait_for_approval=strategy.on_success is OnSuccess.PAUSE,
            )
        )
        rest = rest[size:]
    size = batch_size(strategy, len(hosts))
    for start in range(0, len(rest), size):
        is_last = start + size >= len(rest)
        batches.append(
            Batch(
                index=len(batches),
                kind=BatchKind.BATCH,
                hosts=tuple(rest[start:start + size]),
                pause_after=0.0 if is_last else strategy.pause,
            )
        )
    return tuple(batches)


def _check_hosts(hosts: Sequence[str]) -> None:
    if isinstance(hosts, str):
        raise TypeError("hosts must be a sequence of host names, not one string")
    seen: set[str] = set()
    for host in hosts:
        if host in seen:
            raise ConfigError(f"host {host!r} is listed twice", key_path="hosts")
        seen.add(host)


def failure_threshold(policy: CircuitBreakerPolicy, host_count: int) -> int:
    """Failed hosts that trip the breaker: clamp(ceil(threshold * n), min, max), at most n, at least 1."""
    if host_count < 0:
        raise ValueError(f"host_count must not be negative, got {host_count}")
    raw = math.ceil(_share_of(policy.threshold, host_count))
    clamped = min(max(raw, policy.min_threshold), policy.max_threshold)
    return max(1, min(clamped, host_count))


def should_trip(policy: CircuitBreakerPolicy, host_count: int, failures: int) -> bool:
    """True once ``failures`` reached the policy's threshold for a fleet of ``host_count``."""
    if failures < 0:
        raise ValueError(f"failures must not be negative, got {failures}")
    return failures >= failure_threshold(policy, host_count)
