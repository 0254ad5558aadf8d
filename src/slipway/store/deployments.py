"""Deployments of a release to an environment, what each did on each host, and what runs where."""

from __future__ import annotations

from sqlalchemy import func, select

from slipway.errors import StateError
from slipway.model import records as rec
from slipway.model.states import DeploymentKind, State, transition
from slipway.store import schema as t
from slipway.store.base import StoreBase, journalled


class DeploymentStore(StoreBase):
    """Deployments of a release to an environment, what each did on each host, and what runs where."""

    def start_deployment(
        self,
        *,
        environment: str,
        kind: DeploymentKind,
        run_id: int | None,
        artifact_digest: str,
        release_id: str,
        deployed_by: str,
        reason: str | None = None,
        strategy: str | None = None,
    ) -> int:
        """Record a deployment that starts now."""
        with self._tx() as s:
            d = t.Deployment(
                environment=environment,
                kind=kind.value,
                run_id=run_id,
                artifact_digest=artifact_digest,
                release_id=release_id,
                state=State.RUNNING.value,
                started_at=self._now(),
                deployed_by=deployed_by,
                reason=reason,
                strategy=strategy,
            )
            s.add(d)
            s.flush()
            self._audit(
                s,
                deployed_by,
                f"deployment.{kind.value}",
                f"environment {environment}",
                {"deployment": d.id, "release": release_id, "artifact": artifact_digest, "run": run_id},
            )
            return d.id

    @journalled
    def finish_deployment(self, deployment_id: int, state: State, *, reason: str | None = None) -> None:
        """Record how a deployment ended."""
        with self._tx() as s:
            d = s.get(t.Deployment, deployment_id)
            if d is None:
                raise StateError(f"there is no deployment {deployment_id}")
            d.state = transition(State(d.state), state, what=f"deployment {deployment_id}").value
            d.finished_at = self._now()
            if reason:
                d.reason = reason
            self._audit(
                s,
                d.deployed_by,
                f"deployment.{state.value}",
                f"environment {d.environment}",
                {"deployment": d.id, "reason": reason},
            )

    def park_deployment(self, deployment_id: int, *, reason: str) -> None:
        """A running deployment waits for a person (canary ``on_success: pause``)."""
        self._move_deployment(deployment_id, State.WAITING, reason=reason)

    def resume_deployment(self, deployment_id: int, *, by: str, reason: str) -> None:
        """A waiting deployment runs again: someone decided (who and why go to the audit log)."""
        self._move_deployment(deployment_id, State.RUNNING, reason=reason, actor=by)

    def _move_deployment(self, deployment_id: int, state: State, *, reason: str, actor: str | None = None) -> None:
        with self._tx() as s:
            d = s.get(t.Deployment, deployment_id)
            if d is None:
                raise StateError(f"there is no deployment {deployment_id}")
            d.state = transition(State(d.state), state, what=f"deployment {deployment_id}").value
            d.reason = reason
            self._audit(
                s, actor or d.deployed_by, f"deployment.{state.value}", f"environment {d.environment}",
                {"deployment": d.id, "reason": reason},
            )

    @journalled
    def record_host(
        self,
        deployment_id: int,
        *,
        host: str,
        from_release: str | None,
        to_release: str,
        state: State,
        error: str | None,
        duration: float | None,
    ) -> None:
        """Record what a deployment did on one host (again: replaces what was recorded, one row per host)."""
        with self._tx() as s:
            row = s.scalars(
                select(t.DeploymentHost).where(
                    t.DeploymentHost.deployment_id == deployment_id, t.DeploymentHost.host == host
                )
            ).first()
            if row is None:
                row = t.DeploymentHost(deployment_id=deployment_id, host=host)
                s.add(row)
            row.from_release, row.to_release, row.state = from_release, to_release, state.value
            row.error, row.duration = error, duration

    @journalled
    def set_host_release(
        self,
        *,
        environment: str,
        host: str,
        release_id: str,
        artifact_digest: str,
        commit: str,
        deployment_id: int,
        run_id: int | None,
    ) -> None:
        """Say which release a host runs from now on (called right after its ``current`` moved)."""
        with self._tx() as s:
            row = s.get(t.HostRelease, (environment, host))
            if row is None:
                row = t.HostRelease(environment=environment, host=host)
                s.add(row)
            row.release_id = release_id
            row.artifact_digest = artifact_digest
            row.commit = commit
            row.since = self._now()
            row.deployment_id = deployment_id
            row.run_id = run_id

    def host_releases(self, environment: str | None = None) -> list[rec.HostRelease]:
        """What runs where, by environment and host."""
        with self._tx() as s:
            q = select(t.HostRelease).order_by(t.HostRelease.environment, t.HostRelease.host)
            if environment:
                q = q.where(t.HostRelease.environment == environment)
            return [
                rec.HostRelease(
                    r.environment, r.host, r.release_id, r.artifact_digest, r.commit, r.since, r.deployment_id, r.run_id
                )
                for r in s.scalars(q).all()
            ]

    def deployments(
        self, environment: str | None = None, *, limit: int = 20, offset: int = 0
    ) -> list[rec.DeploymentRecord]:
        """Recent deployments, newest first (a page: ``offset`` skipped), each with its per-host results."""
        with self._tx() as s:
            q = select(t.Deployment).order_by(t.Deployment.id.desc()).limit(limit).offset(offset)
            if environment:
                q = q.where(t.Deployment.environment == environment)
            rows = s.scalars(q).all()
            hosts: dict[int, list[t.DeploymentHost]] = {d.id: [] for d in rows}
            if rows:  # one query for the page's hosts
                q_hosts = (
                    select(t.DeploymentHost)
                    .where(t.DeploymentHost.deployment_id.in_(hosts))
                    .order_by(t.DeploymentHost.host)
                )
                for h in s.scalars(q_hosts):
                    hosts[h.deployment_id].append(h)
            return [_deployment_record(d, hosts[d.id]) for d in rows]

    def deployments_by_state(self) -> dict[tuple[str, str], int]:
        """How many deployments each (environment, state) has (for /metrics)."""
        with self._tx() as s:
            q = select(t.Deployment.environment, t.Deployment.state, func.count()).group_by(
                t.Deployment.environment, t.Deployment.state
            )
            return {(env, state): int(n) for env, state, n in s.execute(q).all()}

    def deployment_durations(self, *, limit: int = 1000) -> list[tuple[str, float]]:
        """(environment, seconds) of the newest finished deployments (for /metrics)."""
        with self._tx() as s:
            q = (
                select(t.Deployment.environment, t.Deployment.finished_at - t.Deployment.started_at)
                .where(t.Deployment.finished_at.is_not(None))
                .order_by(t.Deployment.id.desc())
                .limit(limit)
            )
            return [(env, float(seconds or 0.0)) for env, seconds in s.execute(q).all()]

    def count_deployments(self, environment: str | None = None) -> int:
        """How many deployments there are (of one environment)."""
        with self._tx() as s:
            q = select(func.count()).select_from(t.Deployment)
            if environment:
                q = q.where(t.Deployment.environment == environment)
            return int(s.scalar(q) or 0)


def _deployment_record(d: t.Deployment, hosts: list[t.DeploymentHost]) -> rec.DeploymentRecord:
    return rec.DeploymentRecord(
        d.id,
        d.environment,
        DeploymentKind(d.kind),
        d.run_id,
        d.artifact_digest,
        d.release_id,
        State(d.state),
        d.started_at,
        d.finished_at,
        d.deployed_by,
        d.reason,
        tuple(rec.HostDeployment(h.host, h.from_release, h.to_release, State(h.state), h.error, h.duration) for h in hosts),
        d.strategy,
    )
