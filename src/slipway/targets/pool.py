"""Many targets at once: a pool of SSH targets sharing caps, and a per-host result map for any Target."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from slipway.errors import CommandResult
from slipway.ports import Target
from slipway.targets.ssh import SSHTarget

T = TypeVar("T")


class SSHPool:
    """SSH targets that share two caps: how much work runs at once, and how many connections start at once."""

    def __init__(self, *, max_concurrency: int = 32, max_connecting: int = 8, **defaults: Any) -> None:
        self.max_concurrency = max_concurrency
        self._connecting = asyncio.Semaphore(max_connecting)
        self._defaults = defaults
        self.targets: dict[str, SSHTarget] = {}

    def add(self, name: str, address: str, **options: Any) -> SSHTarget:
        """Create a target that shares this pool's connection gate; ``options`` override the defaults."""
        if name in self.targets:
            raise ValueError(f"target {name!r} is already in the pool")
        target = SSHTarget(name, address, connect_gate=self._connecting, **{**self._defaults, **options})
        self.targets[name] = target
        return target

    def __getitem__(self, name: str) -> SSHTarget:
        return self.targets[name]

    def __len__(self) -> int:
        return len(self.targets)

    async def map(
        self, fn: Callable[[SSHTarget], Awaitable[T]], *, names: Iterable[str] | None = None
    ) -> dict[str, T | Exception]:
        """Call ``fn`` on every target (or those named), at most ``max_concurrency`` at once."""
        chosen = [self.targets[n] for n in names] if names is not None else list(self.targets.values())
        return await run_on_all(chosen, fn, limit=self.max_concurrency)

    async def run(self, command: str, **options: Any) -> dict[str, CommandResult | Exception]:
        """Run one command on every target; the per-host result map."""
        return await self.map(lambda target: target.run(command, **options))

    async def close(self) -> None:
        """Close every connection."""
        await asyncio.gather(*(t.close() for t in self.targets.values()))

    async def __aenter__(self) -> SSHPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


TargetT = TypeVar("TargetT", bound=Target)


async def run_on_all(
    targets: Iterable[TargetT], fn: Callable[[TargetT], Awaitable[T]], *, limit: int = 32
) -> dict[str, T | Exception]:
    """Run ``fn`` on many targets concurrently (``limit`` at a time); map host name -> result or exception.

    One host's failure never stops the others; cancellation still cancels them all.
    """
    gate = asyncio.Semaphore(limit)
    chosen = list(targets)

    async def one(target: TargetT) -> T | Exception:
        async with gate:
            try:
                return await fn(target)
            except Exception as exc:
                return exc

    results = await asyncio.gather(*(one(t) for t in chosen))
    return {t.name: r for t, r in zip(chosen, results, strict=True)}
