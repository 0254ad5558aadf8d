"""Webhook deliveries a server accepted: each id once, so that a replayed delivery starts nothing."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from slipway.errors import StoreError
from slipway.model import records as rec
from slipway.store import schema as t
from slipway.store.base import StoreBase


class TriggerStore(StoreBase):
    """Webhook deliveries, by project, forge and the forge's delivery id."""

    def claim_delivery(self, *, project: str, forge: str, delivery_id: str, event: str) -> int | None:
        """Record an authentic delivery as being handled; its row id, or None when that id was seen before
        (a replay or a redelivery: the caller starts nothing). A delivery whose handling *failed* (the
        repository could not be fetched, say) is claimed again: the forge's "redeliver" is how it is retried."""
        with self._tx() as s:
            retried = s.execute(
                update(t.WebhookDelivery)
                .where(t.WebhookDelivery.project == project, t.WebhookDelivery.forge == forge,
                       t.WebhookDelivery.delivery_id == delivery_id, t.WebhookDelivery.outcome == "failed")
                .values(outcome="received", received_at=self._now(), detail="")
                .returning(t.WebhookDelivery.id)
            ).scalar()
            if retried is not None:
                return int(retried)
        try:
            with self._tx() as s:
                row = t.WebhookDelivery(
                    project=project, forge=forge, delivery_id=delivery_id, event=event,
                    received_at=self._now(), outcome="received", detail="", run_id=None,
                )
                s.add(row)
                s.flush()
                return int(row.id)
        except StoreError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return None
            raise

    def finish_delivery(self, row_id: int, *, outcome: str, detail: str, run_id: int | None = None) -> None:
        """What came of a delivery: ``started`` (run ``run_id``), ``ignored`` or ``failed`` (``detail`` says why)."""
        with self._tx() as s:
            s.execute(
                update(t.WebhookDelivery)
                .where(t.WebhookDelivery.id == row_id)
                .values(outcome=outcome, detail=detail[:2000], run_id=run_id)
            )

    def deliveries(self, *, project: str, limit: int = 50) -> list[rec.DeliveryRecord]:
        """The project's newest deliveries first."""
        with self._tx() as s:
            rows = s.scalars(
                select(t.WebhookDelivery)
                .where(t.WebhookDelivery.project == project)
                .order_by(t.WebhookDelivery.id.desc())
                .limit(limit)
            ).all()
            return [
                rec.DeliveryRecord(r.id, r.project, r.forge, r.delivery_id, r.event, r.received_at, r.outcome,
                                   r.detail, r.run_id)
                for r in rows
            ]
