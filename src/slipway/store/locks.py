"""Named locks with a holder and an expiry (one deployment per environment at a time)."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from slipway.errors import LockHeld, StoreError
from slipway.model import records as rec
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled


class LockStore(StoreBase):
    """Named locks with a holder and an expiry (one deployment per environment at a time)."""

    def acquire_lock(
        self, name: str, holder: str, *, ttl: float, is_dead: Callable[[str], bool] | None = None
    ) -> None:
        """Take the named lock or raise LockHeld naming its holder.

        An expired lock is taken over, and so is one whose holder ``is_dead`` says is provably gone (that
        takeover is recorded in the audit log as ``lock.takeover``).
        """
        now = self._now()
        try:
            with self._tx() as s:
                row = s.get(t.Lock, name, with_for_update=True)
                if row is not None and row.expires_at > now and row.holder != holder:
                    if is_dead is None or not is_dead(row.holder):
                        raise LockHeld(
                            f"{name} is locked by {row.holder} since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(row.acquired_at))}",
                            hint="wait for it to finish; if that process is gone, the lock expires at "
                            + time.strftime("%H:%M:%S", time.localtime(row.expires_at))
                            + " or remove it with 'slipway unlock'",
                        )
                    self._audit(s, holder, "lock.takeover", name, {"dead_holder": row.holder})
                if row is None:
                    s.add(t.Lock(name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
                else:
                    row.holder, row.acquired_at, row.expires_at = holder, now, now + ttl
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # somebody inserted it between our read and write
                raise LockHeld(f"{name} was just locked by another process") from exc
            raise

    def locks(self) -> list[rec.LockRecord]:
        """Every lock held, by name."""
        with self._tx() as s:
            rows = s.scalars(select(t.Lock).order_by(t.Lock.name)).all()
            return [rec.LockRecord(r.name, r.holder, r.acquired_at, r.expires_at) for r in rows]

    def take_over_lock(self, name: str, dead_holder: str, *, actor: str) -> bool:
        """Remove a lock whose holder is gone (only if ``dead_holder`` still holds it); audited ``lock.takeover``."""
        with self._tx() as s:
            gone = s.execute(delete(t.Lock).where(t.Lock.name == name, t.Lock.holder == dead_holder))
            if not gone.rowcount:  # type: ignore[attr-defined]
                return False
            self._audit(s, actor, "lock.takeover", name, {"dead_holder": dead_holder})
            return True

    @journalled
    def release_lock(self, name: str, holder: str | None = None) -> bool:
        """Release the lock (only if ``holder`` holds it, when given); True if a lock was removed."""
        with self._tx() as s:
            q = delete(t.Lock).where(t.Lock.name == name)
            if holder is not None:
                q = q.where(t.Lock.holder == holder)
            return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]
