"""The state store's single entry point: every read and write of runs, deployments and the audit log.

SQLite by default (a file in ``.slipway/``), PostgreSQL when ``SLIPWAY_DATABASE_URL`` says so. The
schema is brought to the newest Alembic revision when the store opens. Every public method is one
transaction; SQLAlchemy errors become :class:`~slipway.errors.StoreError` in :mod:`slipway.store.base`
and nowhere else.

:class:`Store` is composed of one class per idea, each in its own module over the shared
:class:`~slipway.store.base.StoreBase` (connection, clock, journal, transaction). They are mixins rather
than separate objects the Store delegates to: a journalled write is replayed by its method name on the
Store (store/journal.py), every part shares one transaction helper and one clock, and callers keep one
object with the same methods. Each part is also a narrow type a caller can ask for (``RunStore``,
``LockStore`` ...) when it needs only that idea.
"""

from __future__ import annotations

from slipway.store.accounts import AccountStore
from slipway.store.artifacts import ArtifactStore
from slipway.store.audit import AuditStore
from slipway.store.base import ALEMBIC_DIR as ALEMBIC_DIR
from slipway.store.base import HEAD_REVISION as HEAD_REVISION
from slipway.store.base import VERSION_TABLE as VERSION_TABLE
from slipway.store.base import StoreBase as StoreBase
from slipway.store.base import alembic_config as alembic_config
from slipway.store.base import journalled as journalled
from slipway.store.deployments import DeploymentStore
from slipway.store.locks import LockStore
from slipway.store.runs import RunStore
from slipway.store.slots import SlotStore
from slipway.store.steps import StepStore
from slipway.store.triggers import TriggerStore


class Store(
    RunStore, StepStore, ArtifactStore, DeploymentStore, SlotStore, AuditStore, LockStore, AccountStore, TriggerStore
):
    """Runs, stages, steps, artifacts, deployments, slots, approvals, the audit log, locks, accounts and
    webhook deliveries."""
