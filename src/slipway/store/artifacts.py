"""The artifacts built: one record per digest, found again by commit (build once per commit)."""

from __future__ import annotations

from sqlalchemy import select

from slipway.model import records as rec
from slipway.store import schema as t
from slipway.store.base import StoreBase


class ArtifactStore(StoreBase):
    """The artifacts built: one record per digest, found again by commit (build once per commit)."""

    def record_artifact(
        self, *, digest: str, project: str, commit: str, built_at: float, size: int, file_count: int, run_id: int | None
    ) -> None:
        """Remember an artifact (idempotent: the first record of a digest wins)."""
        with self._tx() as s:
            if s.get(t.Artifact, digest) is None:
                s.add(
                    t.Artifact(
                        digest=digest,
                        project=project,
                        commit=commit,
                        built_at=built_at,
                        size=size,
                        file_count=file_count,
                        run_id=run_id,
                    )
                )

    def get_artifact(self, digest: str) -> rec.ArtifactRecord | None:
        """The artifact record, or None."""
        with self._tx() as s:
            a = s.get(t.Artifact, digest)
            return _artifact_record(a) if a else None

    def artifact_for_commit(self, project: str, commit: str) -> rec.ArtifactRecord | None:
        """The artifact already built for this commit, if any: build once per commit."""
        with self._tx() as s:
            a = s.scalars(
                select(t.Artifact)
                .where(t.Artifact.project == project, t.Artifact.commit == commit)
                .order_by(t.Artifact.built_at)
            ).first()
            return _artifact_record(a) if a else None


def _artifact_record(a: t.Artifact) -> rec.ArtifactRecord:
    return rec.ArtifactRecord(a.digest, a.project, a.commit, a.built_at, a.size, a.file_count, a.run_id)
