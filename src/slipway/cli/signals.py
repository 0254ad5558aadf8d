"""SIGINT, SIGTERM and SIGHUP stop a command the same way: the first one cancels it, the rest wait.

A CI system cancelling a job, systemd stopping a service and ``kill`` send SIGTERM; a closed terminal
sends SIGHUP; Ctrl-C sends SIGINT. The first of any of them cancels the command's task: the running step
is stopped, every host the deployment switched goes back to the release it ran (its activate hooks run
again), the run is recorded cancelled and the locks are released. Further signals do not cut that short:
they only say so. SIGKILL is the way to abandon it; the next command then records the run interrupted.
The exit code is 128 + the first signal's number (130, 143, 129).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console

from slipway.errors import Cancelled

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopping:
    """Turns the first signal into a cancellation of the command's task, and remembers which it was."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.signal: signal.Signals | None = None

    async def guard(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` with the signal handlers installed in the running loop."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._received, sig, task)
        try:
            return await coro
        finally:
            for sig in SIGNALS:
                loop.remove_signal_handler(sig)

    def _received(self, sig: signal.Signals, task: asyncio.Task[Any]) -> None:
        if self.signal is None:
            self.signal = sig
            self.console.print(
                f"[yellow]{sig.name}: stopping[/]: the running step is stopped, hosts this deployment switched "
                "go back to the release they ran, the run is recorded cancelled"
            )
            task.cancel(f"interrupted by {sig.name}")
            return
        self.console.print(
            f"[yellow]{sig.name}: already stopping[/] (on {self.signal.name}); hosts are being put back first. "
            "SIGKILL abandons that: the next command records the run interrupted, and 'slipway rollback' puts "
            "the hosts back"
        )

    def cancelled(self) -> Cancelled:
        """The error the command ends with: what stopped it, what was done, and the exit code 128 + signal."""
        sig = self.signal or signal.SIGINT
        error = Cancelled(
            f"interrupted by {sig.name}: the running step was stopped, every host this deployment switched was put "
            "back, and the run was recorded cancelled",
            hint="'slipway resume RUN' continues it; 'slipway history' shows it",
        )
        error.exit_code = 128 + sig.value
        return error
