"""Wiring: one :class:`App` holds the config, the settings, the stores and the observer of a command."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slipway.clock import SystemClock
from slipway.config import LoadedConfig, find_config, load_config, parse_config
from slipway.engine.events import NullObserver, Observer
from slipway.engine.masking import Masker
from slipway.errors import ConfigError, StoreError
from slipway.model.config import LocalTargetSpec, SSHTargetSpec, TargetSpec
from slipway.model.containers import ContainerTargetSpec
from slipway.ports import Clock, Target
from slipway.private import secure_state_dir
from slipway.services.notifier import EXIT_WAIT, Notifier
from slipway.services.reconcile import reconcile
from slipway.services.settings import Settings
from slipway.store.journal import Journal
from slipway.store.journal import pending as journal_pending
from slipway.store.repository import Store

if TYPE_CHECKING:  # imported where used: 'slipway status' needs neither asyncio nor archives nor subprocesses
    import asyncio

    from slipway.artifacts.store import LocalArtifactStore


@dataclass
class App:
    """Everything one command needs; the store opens on first use."""

    config: LoadedConfig
    settings: Settings
    environ: Mapping[str, str]
    observer: Observer = field(default_factory=NullObserver)
    masker: Masker = field(default_factory=Masker)
    #: The wall clock of rules about time (deploy freezes); tests inject a FakeClock.
    clock: Clock = field(default_factory=SystemClock)
    #: Delivers notifications in the background (services/notifications.py); shared by :meth:`acting_as`.
    notifier: Notifier = field(default_factory=Notifier)
    _store: Store | None = None
    #: False for an App that borrows another's store (:meth:`acting_as`): closing it leaves the store open.
    _owns_store: bool = True

    @property
    def root(self) -> Path:
        """The project directory (where slipway.yml is)."""
        return self.config.root

    @property
    def store(self) -> Store:
        """The state store, opened (and migrated) on first use, then reconciled (services/reconcile.py)."""
        if self._store is None:
            secure_state_dir(self.settings.state_dir)  # 0700, and what is in it tightened
            directory = self.settings.state_dir / "journal"
            try:
                store = Store(self.settings.database_url, journal=Journal(directory))
            except StoreError as exc:
                raise _pending_journal(exc, directory) from exc
            try:
                reconcile(store, journal_dir=directory, actor=self.settings.identity.quick_actor)
            except StoreError as exc:
                store.close()
                raise _pending_journal(exc, directory) from exc
            self._store = store
        return self._store

    @property
    def artifacts(self) -> LocalArtifactStore:
        """The artifact store."""
        from slipway.artifacts.store import LocalArtifactStore

        return LocalArtifactStore(self.settings.artifact_dir)

    def config_of(self, text: str, path: str) -> LoadedConfig:
        """The configuration a run was started with (runs keep their own copy)."""
        return parse_config(text, path=Path(path))

    def acting_as(self, actor: str, *, observer: Observer | None = None) -> App:
        """This App for one request of a server: the same config and store, acting as ``actor`` (an
        authenticated user), with its own observer and masker. Closing it leaves the shared store open."""
        return App(
            config=self.config,
            settings=self.settings.authenticated(actor),
            environ=self.environ,
            observer=observer or NullObserver(),
            clock=self.clock,
            notifier=self.notifier,
            _store=self.store,
            _owns_store=False,
        )

    def close(self) -> None:
        """Release the store's connections (an App borrowing another's store only lets go of it), after a
        bounded wait for the notifications still being delivered (those given up on are recorded)."""
        if self._store is not None and self._owns_store:
            self.notifier.drain(EXIT_WAIT)
            self._store.close()
        self._store = None


def _pending_journal(exc: StoreError, directory: Path) -> StoreError:
    """The store error, saying what waits in the local journal for the store to answer again."""
    waiting = journal_pending(directory)
    if not waiting:
        return exc
    return StoreError(
        f"{exc.message}\n{len(waiting)} journal(s) of changes the store could not be told wait in {directory}",
        hint="they are written to the store by the next command once it answers (then removed); "
        + (exc.hint or "check SLIPWAY_DATABASE_URL"),
    )


def open_app(
    *,
    config_path: Path | None = None,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    observer: Observer | None = None,
    database_url: str | None = None,
    artifact_dir: str | None = None,
    actor: str | None = None,
    as_override: str | None = None,
) -> App:
    """Find and load slipway.yml, resolve settings, and wire an App.

    ``actor`` is a user the caller has authenticated (a server's): recorded as given, never refused.
    ``as_override`` is the CLI's ``--as``: refused, like SLIPWAY_USER, when slipway.yml sets
    ``identity.require`` (a GateError when a command first records who acts).
    """
    env = dict(os.environ if environ is None else environ)
    path = config_path or find_config(cwd or Path.cwd())
    loaded = load_config(path.resolve())
    settings = Settings.resolve(
        root=loaded.root,
        config=loaded.project.store,
        environ=env,
        database_url=database_url,
        artifact_dir=artifact_dir,
        actor=actor,
        as_override=as_override,
        identity=loaded.project.identity,
        config_path=loaded.path,
    )
    return App(config=loaded, settings=settings, environ=env, observer=observer or NullObserver())


def target_root(spec: TargetSpec, root: Path) -> str:
    """The deploy root of a target; local paths are relative to the project directory."""
    if isinstance(spec, LocalTargetSpec):
        path = Path(spec.path).expanduser()
        return str((path if path.is_absolute() else root / path).absolute())
    if isinstance(spec, ContainerTargetSpec):
        return ""  # containers have no deploy root: they run the image
    return spec.path


def make_target(
    spec: TargetSpec, *, root: Path, environ: Mapping[str, str], connect_gate: asyncio.Semaphore | None = None
) -> Target:
    """Build the adapter for a target spec. ``connect_gate`` caps SSH connection starts across targets."""
    if isinstance(spec, LocalTargetSpec):
        from slipway.targets.local import LocalTarget

        return LocalTarget(spec.name, target_root(spec, root), base_env=environ)
    if isinstance(spec, SSHTargetSpec):
        from slipway.targets.ssh import SSHTarget  # imported lazily: only fleets need asyncssh

        def local(path: str) -> Path:
            p = Path(path).expanduser()
            return p if p.is_absolute() else root / p

        return SSHTarget(
            spec.name,
            spec.address,
            root=spec.path,
            port=spec.port,
            username=spec.user,
            client_keys=[local(spec.key)] if spec.key else (),
            known_hosts=local(spec.known_hosts or "~/.ssh/known_hosts"),
            accept_new_host_keys=spec.accept_new_host_keys,
            connect_timeout=spec.connect_timeout,
            connect_gate=connect_gate,
            agent_idle=spec.agent_idle or None,
            keep=spec.keep or None,
        )
    raise ConfigError(f"unsupported target kind {getattr(spec, 'kind', '?')!r}")
