"""Blue/green slots: which release each slot of each host holds, and which slot serves."""

from __future__ import annotations

from sqlalchemy import select

from slipway.model import records as rec
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled


class SlotStore(StoreBase):
    """Blue/green slots: which release each slot of each host holds, and which slot serves."""

    @journalled
    def set_slot_release(
        self,
        *,
        environment: str,
        host: str,
        slot: str,
        release_id: str,
        artifact_digest: str,
        commit: str,
        deployment_id: int,
        run_id: int | None,
    ) -> None:
        """Say which release a slot of a host holds (called right after that slot's ``current`` moved)."""
        with self._tx() as s:
            row = s.get(t.SlotRelease, (environment, host, slot))
            if row is None:
                row = t.SlotRelease(environment=environment, host=host, slot=slot, serving=False)
                s.add(row)
            row.release_id, row.artifact_digest, row.commit = release_id, artifact_digest, commit
            row.since, row.deployment_id, row.run_id = self._now(), deployment_id, run_id

    @journalled
    def set_serving_slot(self, environment: str, slot: str, *, actor: str = "slipway") -> None:
        """After a switch: ``slot`` serves every host of the environment; each host runs that slot's release.

        The host's record keeps the deployment (and run) that put the release into the slot; ``since`` is
        the moment it started serving.
        """
        with self._tx() as s:
            rows = s.scalars(select(t.SlotRelease).where(t.SlotRelease.environment == environment)).all()
            for row in rows:
                row.serving = row.slot == slot
                if row.slot != slot:
                    continue
                host = s.get(t.HostRelease, (environment, row.host))
                if host is None:
                    host = t.HostRelease(environment=environment, host=row.host)
                    s.add(host)
                host.release_id, host.artifact_digest, host.commit = row.release_id, row.artifact_digest, row.commit
                host.since, host.deployment_id, host.run_id = self._now(), row.deployment_id, row.run_id
            self._audit(s, actor, "slot.serve", f"environment {environment}", {"slot": slot})

    def slot_releases(self, environment: str) -> list[rec.SlotRelease]:
        """What each slot of each host of ``environment`` holds, by host and slot."""
        with self._tx() as s:
            q = (
                select(t.SlotRelease)
                .where(t.SlotRelease.environment == environment)
                .order_by(t.SlotRelease.host, t.SlotRelease.slot)
            )
            return [
                rec.SlotRelease(
                    r.environment, r.host, r.slot, r.release_id, r.artifact_digest, r.commit, r.since,
                    r.deployment_id, r.run_id, bool(r.serving),
                )
                for r in s.scalars(q).all()
            ]
