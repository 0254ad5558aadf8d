"""Tables of the state store. Alembic migrations in ``alembic/versions`` create exactly these."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class Run(Base):
    """A pipeline run, promotion or rollback."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    commit: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    artifact_digest: Mapped[str | None] = mapped_column(String(80), nullable=True)
    triggered_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    config_text: Mapped[str] = mapped_column(Text)
    config_path: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Stage(Base):
    """A stage of a run."""

    __tablename__ = "stages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    environment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("run_id", "idx"),)


class Step(Base):
    """A command or built-in action run on a host within a stage."""

    __tablename__ = "steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_id: Mapped[int] = mapped_column(ForeignKey("stages.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    host: Mapped[str] = mapped_column(String(200))
    command: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20))
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    log: Mapped[str] = mapped_column(Text, default="")


class Artifact(Base):
    """An artifact built by a run, addressed by its digest."""

    __tablename__ = "artifacts"
    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    project: Mapped[str] = mapped_column(String(200))
    commit: Mapped[str] = mapped_column(String(64), index=True)
    built_at: Mapped[float] = mapped_column(Float)
    size: Mapped[int] = mapped_column(BigInteger)
    file_count: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Deployment(Base):
    """A deployment or rollback of one environment."""

    __tablename__ = "deployments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    artifact_digest: Mapped[str] = mapped_column(String(80))
    release_id: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    deployed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: The strategy's kind (revision 0003); None for deployments recorded before.
    strategy: Mapped[str | None] = mapped_column(String(40), nullable=True)


class DeploymentHost(Base):
    """What a deployment did on one host."""

    __tablename__ = "deployment_hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    host: Mapped[str] = mapped_column(String(200))
    from_release: Mapped[str | None] = mapped_column(String(200), nullable=True)
    to_release: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration: Mapped[float | None] = mapped_column(Float, nullable=True)


class HostRelease(Base):
    """The release each host runs now: one row per (environment, host), replaced on every switch."""

    __tablename__ = "host_releases"
    environment: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), primary_key=True)
    release_id: Mapped[str] = mapped_column(String(200))
    artifact_digest: Mapped[str] = mapped_column(String(80))
    commit: Mapped[str] = mapped_column(String(64))
    since: Mapped[float] = mapped_column(Float)
    deployment_id: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


class SlotRelease(Base):
    """Blue/green (revision 0004): the release each slot of a host holds, and whether it serves."""

    __tablename__ = "slot_releases"
    environment: Mapped[str] = mapped_column(String(200), primary_key=True)
    host: Mapped[str] = mapped_column(String(200), primary_key=True)
    slot: Mapped[str] = mapped_column(String(63), primary_key=True)
    release_id: Mapped[str] = mapped_column(String(200))
    artifact_digest: Mapped[str] = mapped_column(String(80))
    commit: Mapped[str] = mapped_column(String(64))
    since: Mapped[float] = mapped_column(Float)
    deployment_id: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    serving: Mapped[bool] = mapped_column(Boolean, default=False)


class Approval(Base):
    """A decision on an approval gate, with who and why."""

    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    stage_name: Mapped[str] = mapped_column(String(200))
    decision: Mapped[str] = mapped_column(String(20))
    by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


class Audit(Base):
    """Every action, who did it and to what."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100))
    subject: Mapped[str] = mapped_column(String(200))
    detail: Mapped[str] = mapped_column(Text, default="")


class Lock(Base):
    """An advisory lock on an environment: one deployment at a time, holder named."""

    __tablename__ = "locks"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(400))
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)



class Breaker(Base):
    """One circuit breaker's state (JSON of ``BreakerState.to_dict``), versioned for compare-and-set."""

    __tablename__ = "breakers"
    name: Mapped[str] = mapped_column(String(400), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


Index("ix_runs_state", Run.state)


class User(Base):
    """A person who signs in to `slipway serve` (revision 0005); the password only as an argon2 hash."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    """An API token: only its SHA-256 is kept; the token itself is shown once, when it is made."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    last_used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class RoleGrant(Base):
    """A role a user holds on the environments whose names match a glob pattern (``*``: all)."""

    __tablename__ = "role_grants"
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)
    environments: Mapped[str] = mapped_column(String(200), primary_key=True)


class WebSession(Base):
    """A signed-in browser: the cookie's SHA-256, its CSRF token, and when it ends."""

    __tablename__ = "web_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("users.name", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class WebhookDelivery(Base):
    """A forge's webhook delivery that was authentic (revision 0006): its id refuses a replay."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("project", "forge", "delivery_id", name="uq_webhook_delivery"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project: Mapped[str] = mapped_column(String(200))
    forge: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[float] = mapped_column(Float)
    #: started (a run), ignored (why in ``detail``), or failed (the error in ``detail``).
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
