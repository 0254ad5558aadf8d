"""A run as it happens, for server-sent events: the live feed's events while this server drives the run,
and the run's state from the store (so a run driven elsewhere is followed too) until it ends or waits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from slipway.services import report
from slipway.services.hub import Hub, LiveFeed

POLL = 0.25
#: A stream ends after this long even if the run does not (the browser reconnects by itself).
MAX_STREAM = 3600.0


async def run_events(
    hub: Hub, project: str, run_id: int, *, disconnected: Callable[[], Any] | None = None
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs: ``run`` (the run whenever its state or a stage's changes), the feed's own
    events (``output``, ``step_started`` ...), and ``end`` once the run is final or waits with nothing
    left to stream."""
    app = hub.project(project)
    feed: LiveFeed | None = None
    seen, last = 0, None
    deadline = time.monotonic() + MAX_STREAM
    while time.monotonic() < deadline:
        current = hub.driver.feed(project, run_id)
        if current is not feed:  # driven (again) by this server since the last look
            feed, seen = current, 0
        feed_done = feed is not None and feed.done  # read before the events: the last one is never missed
        if feed is not None:
            for seq, event in feed.since(seen):
                seen = seq
                yield event["kind"], event
        run = await asyncio.to_thread(report.run_view, app, run_id)
        shape = (run["state"], tuple(s["state"] for s in run["stages"]))
        if shape != last:
            last = shape
            yield "run", run
        if run["state"] not in ("pending", "running", "queued") and (feed is None or feed_done):
            yield "end", {"state": run["state"]}
            return
        if disconnected is not None and await disconnected():
            return
        await asyncio.sleep(POLL)


def sse(event: str, data: dict[str, Any]) -> str:
    """One server-sent event (JSON data on one line)."""
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
