"""Reconcile a freshly opened store: replay its journals, free the locks of dead processes (services/recovery.py).

It needs only the store, so that App (services/app.py), which opens the store, can call it without
importing the services built on top of App.
"""

from __future__ import annotations

from pathlib import Path

from slipway.processes import is_dead, parse_holder, this_process
from slipway.store import journal
from slipway.store.repository import Store

#: A run lock lives as long as its process; the expiry only frees a lock of another machine that vanished.
RUN_LOCK_TTL = 7 * 24 * 3600
RUN_LOCK = "run "


def holder_text(actor: str, *, run_id: int | None, doing: str | None = None) -> str:
    """How this process names itself as a lock holder: who, for what, and the process (pid, machine, start)."""
    return f"{actor} ({doing or f'run {run_id}'}, {this_process().describe()})"


def holder_is_dead(holder: str) -> bool:
    """Whether a holder text names a process that is provably gone from this machine."""
    process = parse_holder(holder)
    return process is not None and is_dead(process)


def reconcile(store: Store, *, journal_dir: Path, actor: str) -> None:
    """Replay pending journals, then record what dead processes left running and free their locks."""
    journal.replay(store, journal_dir)
    me = holder_text(actor, run_id=None)
    for lock in store.locks():
        if not holder_is_dead(lock.holder):
            continue
        if lock.name.startswith(RUN_LOCK) and lock.name[len(RUN_LOCK) :].isdigit():
            run_id = int(lock.name[len(RUN_LOCK) :])
            store.interrupt_run(run_id, reason=f"interrupted: the process driving it died ({lock.holder})", actor=me)
        store.take_over_lock(lock.name, lock.holder, actor=me)
