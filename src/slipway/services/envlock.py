"""The environment lock: one deployment (or switch back) of an environment at a time, its holder named.

Every path that changes what an environment runs takes it here: release directories
(:mod:`slipway.services.deployments`), blue/green slots (:mod:`slipway.services.bluegreen`,
:mod:`slipway.services.switchback`) and container targets (:mod:`slipway.services.container_rollout`).
A holder that died on this machine is taken over (:mod:`slipway.services.recovery`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slipway.services import reconcile
from slipway.services.app import App

#: An environment lock outlives no deployment; the expiry only frees a lock of another machine that vanished.
LOCK_TTL = 6 * 3600


def lock_name(environment: str) -> str:
    """The lock's name in the store."""
    return f"environment {environment}"


@contextmanager
def environment_lock(app: App, environment: str, *, run_id: int | None) -> Iterator[None]:
    """Hold ``environment``'s lock for the block (LockHeld when a live process holds it)."""
    name, holder = lock_name(environment), reconcile.holder_text(app.settings.actor, run_id=run_id)
    app.store.acquire_lock(name, holder, ttl=LOCK_TTL, is_dead=reconcile.holder_is_dead)
    try:
        yield
    finally:
        app.store.release_lock(name, holder)
