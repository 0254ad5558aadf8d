"""Checks: verify a host after activation, smoke-test an environment, guard external dependencies.

What slipway.yml says about checks is in the pure model (:mod:`slipway.model.checks`); here
:mod:`.runner` runs checks with timeouts and retries, :mod:`.breaker` and :mod:`.guard` keep a circuit
breaker per dependency, and :mod:`.loadtest` runs a bounded load test. docs/checks.md describes the
configuration.

Exports are imported on first use: reading slipway.yml must not pay for httpx and SQLAlchemy, which only
running a check needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slipway.checks.breaker import (
        BreakerRepository,
        BreakerState,
        BreakerStatus,
        InMemoryBreakerRepository,
        Outcome,
        allow,
        record,
    )
    from slipway.checks.guard import DependencyGuard
    from slipway.checks.loadtest import LoadTestResult, raise_for_breaches, run_load_test
    from slipway.checks.probes import CommandExecutor, run_local_command
    from slipway.checks.runner import CheckResult, CheckRunner, raise_for_failures, run_checks
    from slipway.model.checks import (
        Backoff,
        BreakerPolicy,
        CheckKind,
        CheckSpec,
        CommandCheck,
        DnsCheck,
        HttpCheck,
        LoadTestSpec,
        LoadThresholds,
        SqlCheck,
        TcpCheck,
        parse_checks,
    )

_MODULES = {
    "Backoff": "slipway.model.checks",
    "BreakerPolicy": "slipway.model.checks",
    "BreakerRepository": "slipway.checks.breaker",
    "BreakerState": "slipway.checks.breaker",
    "BreakerStatus": "slipway.checks.breaker",
    "CheckKind": "slipway.model.checks",
    "CheckResult": "slipway.checks.runner",
    "CheckRunner": "slipway.checks.runner",
    "CheckSpec": "slipway.model.checks",
    "CommandCheck": "slipway.model.checks",
    "CommandExecutor": "slipway.checks.probes",
    "DependencyGuard": "slipway.checks.guard",
    "DnsCheck": "slipway.model.checks",
    "HttpCheck": "slipway.model.checks",
    "InMemoryBreakerRepository": "slipway.checks.breaker",
    "LoadTestResult": "slipway.checks.loadtest",
    "LoadTestSpec": "slipway.model.checks",
    "LoadThresholds": "slipway.model.checks",
    "Outcome": "slipway.checks.breaker",
    "SqlCheck": "slipway.model.checks",
    "TcpCheck": "slipway.model.checks",
    "allow": "slipway.checks.breaker",
    "parse_checks": "slipway.model.checks",
    "raise_for_breaches": "slipway.checks.loadtest",
    "raise_for_failures": "slipway.checks.runner",
    "record": "slipway.checks.breaker",
    "run_checks": "slipway.checks.runner",
    "run_load_test": "slipway.checks.loadtest",
    "run_local_command": "slipway.checks.probes",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Backoff",
    "BreakerPolicy",
    "BreakerRepository",
    "BreakerState",
    "BreakerStatus",
    "CheckKind",
    "CheckResult",
    "CheckRunner",
    "CheckSpec",
    "CommandCheck",
    "CommandExecutor",
    "DependencyGuard",
    "DnsCheck",
    "HttpCheck",
    "InMemoryBreakerRepository",
    "LoadTestResult",
    "LoadTestSpec",
    "LoadThresholds",
    "Outcome",
    "SqlCheck",
    "TcpCheck",
    "allow",
    "parse_checks",
    "raise_for_breaches",
    "raise_for_failures",
    "record",
    "run_checks",
    "run_load_test",
    "run_local_command",
]
