"""A backfill's lock budget: batch sizes that keep each batch's transaction near a time budget.

Every batch holds row locks on the rows it changes until it commits: a request that writes one of them
waits that long. A fixed batch size holds locks for as long as the table, the machine's load and the
statement make it take; with ``budget=50ms`` in the ``-- slipway:batch`` header the runner measures each
batch and sizes the next one so that it takes about 80% of the budget (from the rows per second the last
batch achieved). It shrinks at once (a batch over budget is what the budget prevents) but grows at most
twice per batch, so one fast batch does not swing it. A batch that ran past twice the budget (the database was busy) also makes the runner pause
for as long as that batch held its locks before going on, so the requests it blocked are served first.

Pure: no clock, no database. The runner feeds it each batch's rows and lock time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: The share of the budget a batch aims at: room for the variation from one batch to the next.
AIM = 0.8
#: How much a batch may grow relative to the one before.
MAX_GROWTH = 2.0
#: A batch that held its locks longer than this many budgets makes the runner pause.
PAUSE_OVER = 2.0
MIN_SIZE = 1
MAX_SIZE = 1_000_000


@dataclass
class LockBudget:
    """Sizes the next batch from the last one's lock time; keeps every batch's lock time for the report."""

    #: Seconds; None: a fixed batch size (only the lock times are kept, for the report).
    budget: float | None
    size: int
    held: list[float] = field(default_factory=list)

    def after_batch(self, rows: int, held: float) -> float:
        """Record a batch of ``rows`` keys that held its locks ``held`` seconds; return how long to pause."""
        self.held.append(held)
        if self.budget is None:
            return 0.0
        aim = self.budget * AIM
        wanted = self.size * MAX_GROWTH if held <= 0 or rows <= 0 else rows * aim / held
        self.size = int(min(MAX_SIZE, max(MIN_SIZE, min(self.size * MAX_GROWTH, wanted))))
        return held if held > self.budget * PAUSE_OVER else 0.0


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def lock_summary(held: list[float]) -> dict[str, float]:
    """p50, p99 and max of the batches' lock times, in seconds."""
    return {"lock_p50": percentile(held, 0.5), "lock_p99": percentile(held, 0.99), "lock_max": max(held, default=0.0)}
