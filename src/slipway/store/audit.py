"""Decisions on gates and the append-only audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from slipway.model import records as rec
from slipway.model.states import Decision
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled


class AuditStore(StoreBase):
    """Decisions on gates and the append-only audit log."""

    def add_approval(self, *, run_id: int, stage_name: str, decision: Decision, by: str, reason: str) -> None:
        """Record who decided what on a gate, and why."""
        with self._tx() as s:
            s.add(
                t.Approval(
                    run_id=run_id, stage_name=stage_name, decision=decision.value, by=by, reason=reason, at=self._now()
                )
            )
            self._audit(s, by, f"approval.{decision.value}", f"run {run_id}", {"stage": stage_name, "reason": reason})

    def approvals(self, run_id: int | None = None) -> list[rec.ApprovalRecord]:
        """Decisions on gates, oldest first."""
        return self.approvals_of(None if run_id is None else [run_id])

    def approvals_of(self, run_ids: list[int] | None) -> list[rec.ApprovalRecord]:
        """Decisions on the gates of these runs (all runs: None), oldest first, in one query."""
        with self._tx() as s:
            q = select(t.Approval).order_by(t.Approval.id)
            if run_ids is not None:
                q = q.where(t.Approval.run_id.in_(run_ids))
            return [
                rec.ApprovalRecord(a.id, a.run_id, a.stage_name, Decision(a.decision), a.by, a.reason, a.at)
                for a in s.scalars(q).all()
            ]

    @journalled
    def audit(self, actor: str, action: str, subject: str, detail: dict[str, Any] | None = None) -> None:
        """Append to the audit log."""
        with self._tx() as s:
            self._audit(s, actor, action, subject, detail or {})

    def audit_log(self, *, limit: int = 100, offset: int = 0) -> list[rec.AuditRecord]:
        """The newest audit entries first (a page: ``offset`` skipped)."""
        with self._tx() as s:
            rows = s.scalars(select(t.Audit).order_by(t.Audit.id.desc()).limit(limit).offset(offset)).all()
            return [rec.AuditRecord(a.id, a.at, a.actor, a.action, a.subject, a.detail) for a in rows]

    def count_audit(self) -> int:
        """How many audit entries there are."""
        with self._tx() as s:
            return int(s.scalar(select(func.count()).select_from(t.Audit)) or 0)
