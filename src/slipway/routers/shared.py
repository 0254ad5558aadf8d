"""Several container targets behind one router: each target owns its own backends of a group.

:func:`slipway.targets.container.deploy_services` speaks to a Router as if its target were alone: it
sets a group to ``[old, new]``, drains ``old``, then sets it to ``[new]``. With two engines behind one
nginx that would drop the other engine's containers from the group. :class:`SharedGroups` gives each
target a view whose ``set_upstream`` replaces only that target's backends and keeps every other
target's (with their ``down`` marks); backends no target owns (a placeholder, a container that is gone)
leave the group at the next change. Changes through the views are serialised, so a view never writes
back a state that another view changed in the meantime.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from slipway.errors import DeploymentError
from slipway.model.routing import Backend, Router, RouterState


class SharedGroups:
    """The router of an environment and which target owns which backends of each group."""

    def __init__(self, router: Router, *, close: Callable[[], Awaitable[None]] | None = None) -> None:
        self.router = router
        self._close = close
        #: group -> target -> its backends, in the order they were set.
        self.owned: dict[str, dict[str, list[Backend]]] = {}
        self._lock = asyncio.Lock()

    def adopt(self, group: str, target: str, backends: Sequence[Backend]) -> None:
        """Record that ``target`` serves ``group`` with ``backends`` now (read back from its engine)."""
        self.owned.setdefault(group, {})[target] = list(backends)

    async def close(self) -> None:
        """Close the router's connection (``router.host``: nginx on another machine, over SSH)."""
        if self._close is not None:
            await self._close()

    def view(self, target: str) -> Router:
        """The Router that ``target``'s deployment uses."""
        return _TargetView(self, target)

    async def sync(self, group: str) -> bool:
        """Make the group list exactly the owned backends (nothing when none is owned); True if changed."""
        wanted = [b for backends in self.owned.get(group, {}).values() for b in backends]
        if not wanted:
            return False
        async with self._lock:
            state = await self._state(group)
            if state is not None and _keys(state.backends) == _keys(wanted):
                return False
            await self.router.set_upstream(group, wanted)
            return True

    async def set_for(self, target: str, group: str, backends: Sequence[Backend]) -> None:
        """Replace ``target``'s backends of ``group``; the other targets' stay as they are."""
        async with self._lock:
            self.owned.setdefault(group, {})[target] = list(backends)
            state = await self._state(group)
            down = {(b.host, b.port) for b in state.backends if b.down} if state is not None else set()
            merged = [
                b.model_copy(update={"down": True}) if owner != target and (b.host, b.port) in down else b
                for owner, owned in self.owned[group].items()
                for b in owned
            ]
            await self.router.set_upstream(group, merged)

    async def drain(self, group: str, backend: Backend) -> None:
        """Take one backend out of rotation (serialised with the other views' changes)."""
        async with self._lock:
            await self.router.drain(group, backend)

    async def enable(self, group: str, backend: Backend) -> None:
        """Put one backend back into rotation."""
        async with self._lock:
            await self.router.enable(group, backend)

    async def _state(self, group: str) -> RouterState | None:
        try:
            return await self.router.current(group)
        except DeploymentError:  # the group does not exist yet
            return None


def _keys(backends: Sequence[Backend]) -> set[tuple[str, int]]:
    return {(b.host, b.port) for b in backends}


class _TargetView:
    """One target's Router: its ``set_upstream`` changes only that target's backends."""

    def __init__(self, shared: SharedGroups, target: str) -> None:
        self.shared = shared
        self.target = target

    async def set_upstream(self, group: str, backends: Sequence[Backend]) -> None:
        """Replace this target's backends of ``group``."""
        await self.shared.set_for(self.target, group, backends)

    async def drain(self, group: str, backend: Backend) -> None:
        """Take ``backend`` out of rotation and wait for its in-flight requests."""
        await self.shared.drain(group, backend)

    async def enable(self, group: str, backend: Backend) -> None:
        """Put ``backend`` back into rotation."""
        await self.shared.enable(group, backend)

    async def switch(self, group: str, slot: str) -> None:
        """Blue/green slots are not used by container targets."""
        raise DeploymentError(f"group {group!r}: container targets do not switch blue/green slots")

    async def current(self, group: str) -> RouterState:
        """What the router does for ``group`` (all targets)."""
        return await self.shared.router.current(group)
