"""The real clock; tests inject :class:`slipway.testing.FakeClock` instead."""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    """Wall clock, monotonic clock and asyncio sleep."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()

    def monotonic(self) -> float:
        """A monotonic reading."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep without blocking the event loop."""
        await asyncio.sleep(seconds)
