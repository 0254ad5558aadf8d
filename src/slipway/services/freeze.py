"""Deploy freezes at the start of a deploy stage: go on, wait for the end, fail naming it, or be overridden.

What counts as frozen is pure (:mod:`slipway.model.freeze`); this module reads the App's clock, waits on
it, and records an override (who, which freeze, why) in the audit log as ``freeze.override``. Rollbacks
never come here: a rollback is the way out of a bad release, freeze or not (docs/config.md, "freezes").
"""

from __future__ import annotations

from datetime import UTC, datetime

from slipway.errors import GateError
from slipway.model.config import Project
from slipway.model.freeze import ActiveFreeze, OnFreeze, active_freeze
from slipway.services.app import App

#: Longest single sleep while waiting: the freeze is read again after it (slipway.yml may be a chain).
_WAIT_STEP = 60.0


def now(app: App) -> datetime:
    """The App's clock as an aware UTC datetime."""
    return datetime.fromtimestamp(app.clock.now(), UTC)


def active_freezes(app: App, project: Project) -> dict[str, ActiveFreeze]:
    """The freeze in force now on each environment that has one (for ``slipway status``)."""
    at = now(app)
    found = {name: active_freeze(env.freezes, at) for name, env in project.environments.items() if env.freezes}
    return {name: freeze for name, freeze in found.items() if freeze is not None}


async def enforce(
    app: App, project: Project, environment: str, *, override: str | None, timeout: float, run_id: int
) -> None:
    """Return when a deploy stage of ``environment`` may start; GateError when a freeze forbids it.

    ``override`` (a reason) lets the stage start inside a freeze and is audited; ``on_freeze: wait``
    sleeps on the App's clock until the freeze ends, for at most ``timeout`` seconds.
    """
    env = project.environments[environment]
    active = active_freeze(env.freezes, now(app))
    if active is None:
        return
    if override is not None:
        _record_override(app, environment, active, reason=override, run_id=run_id)
        return
    if env.on_freeze is OnFreeze.WAIT:
        await _wait(app, project, environment, active, timeout=timeout)
        return
    raise _frozen(environment, active)


async def _wait(app: App, project: Project, environment: str, active: ActiveFreeze, *, timeout: float) -> None:
    """Sleep until no freeze holds ``environment``; GateError when that is after ``timeout`` seconds."""
    deadline = app.clock.monotonic() + timeout
    current: ActiveFreeze | None = active
    while current is not None:
        left = (current.until - now(app)).total_seconds()
        if app.clock.monotonic() + left > deadline:
            raise _frozen(environment, current, why=f"it ends after the stage's timeout of {timeout:g} s")
        app.observer.message(
            f"deploy to {environment} waits for freeze {current.name} to end at {current.until_text()} "
            f"({left / 60:.0f} min); --override-freeze REASON deploys now"
        )
        await app.clock.sleep(min(left, _WAIT_STEP))
        current = active_freeze(project.environments[environment].freezes, now(app))


def _record_override(app: App, environment: str, active: ActiveFreeze, *, reason: str, run_id: int) -> None:
    if not reason.strip():
        raise GateError("a reason is required to override a freeze", hint="pass --override-freeze REASON")
    actor = app.settings.actor
    detail = {"freeze": active.name, "reason": reason, "until": active.until.isoformat(), "run": run_id}
    app.store.audit(actor, "freeze.override", f"environment {environment}", detail)
    app.observer.message(f"{actor} overrides freeze {active.name} on {environment} (until {active.until_text()}): {reason}")


def _frozen(environment: str, active: ActiveFreeze, *, why: str = "") -> GateError:
    return GateError(
        f"{environment} is frozen by freeze {active.name} until {active.until_text()}"
        + (f": {why}" if why else "")
        + "; nothing was deployed",
        hint="deploy after the freeze ends, or override it with a reason: --override-freeze REASON "
        "(recorded in the audit log; on a server it needs the admin role on the environment)",
    )
