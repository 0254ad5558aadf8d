"""Issue 14: webhook deliveries in the store: each id starts something once; a failed one may be redelivered."""

from __future__ import annotations

import pytest

from slipway.store.repository import Store
from tests.core.test_store import store as store  # the fixture: SQLite and PostgreSQL

pytestmark = pytest.mark.timeout(120)


def test_a_delivery_id_is_claimed_once_and_a_failed_one_again(store: Store) -> None:
    claim = {"project": "webapp", "forge": "github", "delivery_id": "d-1", "event": "push"}
    first = store.claim_delivery(**claim)
    assert first is not None
    assert store.claim_delivery(**claim) is None  # being handled: a replay starts nothing
    store.finish_delivery(first, outcome="failed", detail="git fetch failed")
    again = store.claim_delivery(**claim)  # the forge's redelivery after a failure is handled again
    assert again == first
    store.finish_delivery(again, outcome="started", detail="run 3", run_id=3)
    assert store.claim_delivery(**claim) is None
    assert store.claim_delivery(**{**claim, "forge": "gitlab"}) is not None  # ids are per forge
    assert store.claim_delivery(**{**claim, "project": "other"}) is not None  # and per project
    rows = store.deliveries(project="webapp")
    assert [(r.forge, r.outcome, r.run_id) for r in rows] == [("gitlab", "received", None), ("github", "started", 3)]
