"""Circuit-breaker states in the state store, shared by every Slipway process that uses it.

Each breaker is one row: its name, a version and the state as JSON. :meth:`SqlBreakerRepository.save`
is a compare-and-set on the version (``UPDATE ... WHERE version = :expected``, or an ``INSERT`` that the
primary key refuses when another process inserted first), so concurrent processes never lose an outcome:
the loser reloads and applies its transition again (see :class:`slipway.checks.guard.DependencyGuard`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from slipway.checks.breaker import BreakerState
from slipway.errors import StoreError
from slipway.store import schema as t


class SqlBreakerRepository:
    """A :class:`~slipway.checks.breaker.BreakerRepository` over the ``breakers`` table."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._now = clock

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"state store error (circuit breakers): {exc.__class__.__name__}: {exc}") from exc

    def load(self, name: str) -> BreakerState | None:
        """The saved state of breaker ``name``, or None when it was never saved."""
        with self._tx() as conn:
            row = conn.execute(select(t.Breaker.state, t.Breaker.version).where(t.Breaker.name == name)).first()
        return None if row is None else _decode(row[0], row[1])

    def save(self, name: str, state: BreakerState, *, expected_version: int) -> bool:
        """Compare-and-set: store ``state`` as version ``expected_version + 1``; False when someone won."""
        version = expected_version + 1
        data = json.dumps(replace(state, version=version).to_dict(), sort_keys=True)
        values = {"state": data, "version": version, "updated_at": self._now()}
        try:
            with self._tx() as conn:
                if expected_version == 0:
                    conn.execute(insert(t.Breaker).values(name=name, **values))
                    return True
                result = conn.execute(
                    update(t.Breaker)
                    .where(t.Breaker.name == name, t.Breaker.version == expected_version)
                    .values(**values)
                )
                return bool(result.rowcount)
        except IntegrityError:
            return False  # another process stored this breaker first

    def all(self) -> dict[str, BreakerState]:
        """Every stored breaker by name."""
        with self._tx() as conn:
            rows = conn.execute(select(t.Breaker.name, t.Breaker.state, t.Breaker.version).order_by(t.Breaker.name))
            return {name: _decode(data, version) for name, data, version in rows}

    def reset(self, name: str, *, actor: str, detail: dict[str, object]) -> BreakerState | None:
        """Close breaker ``name`` (empty window) and write the audit entry, in one transaction.

        Returns the state it had, or None when it was never stored (nothing to reset).
        """
        with self._tx() as conn:
            row = conn.execute(select(t.Breaker.state, t.Breaker.version).where(t.Breaker.name == name)).first()
            if row is None:
                return None
            before = _decode(row[0], row[1])
            closed = BreakerState(version=before.version + 1)
            now = self._now()
            # Unconditional on the version: a reset is a person's decision and wins over any in-flight check.
            conn.execute(
                update(t.Breaker)
                .where(t.Breaker.name == name)
                .values(state=json.dumps(closed.to_dict(), sort_keys=True), version=closed.version, updated_at=now)
            )
            conn.execute(
                insert(t.Audit).values(
                    at=now,
                    actor=actor,
                    action="breaker.reset",
                    subject=f"breaker {name}",
                    detail=json.dumps(
                        {**detail, "was": before.status.value, "reason": before.reason}, sort_keys=True, default=str
                    ),
                )
            )
            return before


def _decode(data: str, version: int) -> BreakerState:
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise StoreError(f"stored circuit breaker state is not JSON: {exc}") from exc
    return replace(BreakerState.from_dict(parsed), version=version)
