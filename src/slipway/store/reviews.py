"""Review environments of merge requests: opened (or updated) by each run of a request, closed once."""

from __future__ import annotations

from sqlalchemy import select

from slipway.model.review import ReviewRecord, ReviewState, ReviewUpdate
from slipway.store import schema as t
from slipway.store.base import StoreBase


class ReviewStore(StoreBase):
    """Review environments: one row per (project, request number), kept after it is closed."""

    def open_review(self, update: ReviewUpdate, *, actor: str) -> ReviewRecord:
        """Record a request's environment as open with its newest run (a closed one opens again)."""
        u = update
        with self._tx() as s:
            row = s.get(t.ReviewEnvironment, (u.project, u.number))
            action = "review.updated" if row is not None and row.state == ReviewState.OPEN.value else "review.opened"
            if row is None:
                row = t.ReviewEnvironment(project=u.project, number=u.number, opened_at=u.at)
                s.add(row)
            elif row.state == ReviewState.CLOSED.value:
                row.opened_at, row.closed_at, row.closed_by, row.close_reason = u.at, None, None, None
            row.environment, row.state, row.branch, row.target = u.environment, ReviewState.OPEN.value, u.branch, u.target
            row.head_commit, row.merge_commit, row.url, row.run_id = u.head_commit, u.merge_commit, u.url, u.run_id
            row.updated_at = u.at
            detail = {"head": u.head_commit, "merge": u.merge_commit, "run": u.run_id, "target": u.target}
            self._audit(s, actor, action, f"environment {u.environment}", detail)
            s.flush()
            return _record(row)

    def get_review(self, project: str, number: int) -> ReviewRecord | None:
        """The request's review environment, open or closed; None when it never had one."""
        with self._tx() as s:
            row = s.get(t.ReviewEnvironment, (project, number))
            return _record(row) if row is not None else None

    def reviews(self, project: str, *, state: ReviewState | None = None) -> list[ReviewRecord]:
        """The project's review environments by request number (``state``: only open or closed ones)."""
        with self._tx() as s:
            q = select(t.ReviewEnvironment).where(t.ReviewEnvironment.project == project)
            if state is not None:
                q = q.where(t.ReviewEnvironment.state == state.value)
            return [_record(r) for r in s.scalars(q.order_by(t.ReviewEnvironment.number)).all()]

    def close_review(self, project: str, number: int, *, at: float, by: str, reason: str) -> bool:
        """Record the review environment closed (audited ``review.closed``); False when it was not open."""
        with self._tx() as s:
            row = s.get(t.ReviewEnvironment, (project, number))
            if row is None or row.state != ReviewState.OPEN.value:
                return False
            row.state, row.closed_at, row.closed_by, row.close_reason = ReviewState.CLOSED.value, at, by, reason
            self._audit(s, by, "review.closed", f"environment {row.environment}", {"reason": reason, "request": number})
            return True


def _record(row: t.ReviewEnvironment) -> ReviewRecord:
    return ReviewRecord(
        project=row.project, number=row.number, environment=row.environment, state=ReviewState(row.state), branch=row.branch,
        target=row.target, head_commit=row.head_commit, merge_commit=row.merge_commit, url=row.url,
        run_id=row.run_id, opened_at=row.opened_at, updated_at=row.updated_at, closed_at=row.closed_at,
        closed_by=row.closed_by, close_reason=row.close_reason,
    )
