"""``slipway breakers``: the circuit breakers of every environment's dependencies, and closing one by hand."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime
from typing import Any

from slipway.checks.breaker import BreakerState, BreakerStatus, retry_at
from slipway.errors import ConfigError
from slipway.model.checks import BreakerPolicy, CheckSpec
from slipway.services.app import App
from slipway.services.checks import breaker_name
from slipway.store.breakers import SqlBreakerRepository


def _configured(app: App) -> dict[str, tuple[str, CheckSpec]]:
    """Breaker name -> (environment, dependency) for every dependency in slipway.yml."""
    return {
        breaker_name(env_name, dep.name): (env_name, dep)
        for env_name, env in app.config.project.environments.items()
        for dep in env.dependencies
    }


def list_breakers(app: App) -> list[dict[str, Any]]:
    """Every breaker the store knows or slipway.yml declares, with its state, reason and next trial."""
    stored = SqlBreakerRepository(app.store.engine).all()
    configured = _configured(app)
    rows = []
    for name in sorted(set(stored) | set(configured)):
        state = stored.get(name, BreakerState())
        environment, dep = configured.get(name, (name.split("/", 1)[0], None))
        policy = (dep.breaker if dep else None) or BreakerPolicy()
        rows.append(
            {
                "name": name,
                "environment": environment,
                "status": state.status.value,
                "since": _iso(state.opened_at),
                "reason": state.reason,
                "failures": state.failures,
                "outcomes": len(state.window),
                "next_trial": _iso(retry_at(state, policy)),
                "required": dep.required if dep else None,
                "in_config": dep is not None,
                "checked": name in stored,
            }
        )
    return rows


def reset_breaker(app: App, name: str) -> dict[str, Any]:
    """Close breaker ``name`` (a full name, or a dependency name used by one environment only); audited."""
    stored = SqlBreakerRepository(app.store.engine)
    known = sorted(set(stored.all()) | set(_configured(app)))
    matches = [n for n in known if n == name] or [n for n in known if n.split("/", 1)[-1] == name]
    if len(matches) != 1:
        short = {n.split("/", 1)[-1]: n for n in known}
        close = difflib.get_close_matches(name, [*known, *short], n=1)
        guess = [short.get(close[0], close[0])] if close else []
        raise ConfigError(
            f"no circuit breaker named {name!r}"
            if not matches
            else f"{name!r} names breakers in several environments: {', '.join(matches)}",
            hint=(f"did you mean {guess[0]!r}? " if guess and not matches else "")
            + ("known: " + ", ".join(known) if known else "no environment declares dependencies"),
        )
    [key] = matches
    actor = app.settings.actor
    before = stored.reset(key, actor=actor, detail={"name": key})
    if before is None:  # declared but never checked: nothing stored, it is closed already
        app.store.audit(actor, "breaker.reset", f"breaker {key}", {"name": key, "was": BreakerStatus.CLOSED.value})
        return {"name": key, "was": BreakerStatus.CLOSED.value, "reason": "", "status": BreakerStatus.CLOSED.value}
    return {"name": key, "was": before.status.value, "reason": before.reason, "status": BreakerStatus.CLOSED.value}


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
