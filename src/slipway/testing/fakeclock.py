"""A deterministic :class:`~slipway.ports.Clock` for tests: time moves only when told to."""

from __future__ import annotations

import asyncio
import threading


class FakeClock:
    """A Clock whose time advances only when ``sleep`` is awaited or ``advance`` is called.

    ``sleep(s)`` moves the clock forward by ``s`` and yields once to the event loop, so a retry loop
    with backoff finishes instantly while the clock still shows how long it would have taken.
    There is no scheduler: concurrent sleepers add up (two tasks sleeping 1 s each move the clock by
    2 s). Tests that need exact timings sleep in one task. ``sleeps`` records every requested duration.

    ``advance`` may be called from another thread (a test server simulating slowness), hence the lock.
    """

    def __init__(self, *, start: float = 1_700_000_000.0, monotonic_start: float = 1000.0) -> None:
        self._wall_offset = start - monotonic_start
        self._monotonic = monotonic_start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        """Fake seconds since the epoch; moves together with ``monotonic``."""
        with self._lock:
            return self._monotonic + self._wall_offset

    def monotonic(self) -> float:
        """Fake monotonic reading."""
        with self._lock:
            return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (never backwards)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds} s)")
        with self._lock:
            self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds``, then let other tasks run once."""
        seconds = max(0.0, seconds)
        with self._lock:
            self.sleeps.append(seconds)
            self._monotonic += seconds
        await asyncio.sleep(0)
