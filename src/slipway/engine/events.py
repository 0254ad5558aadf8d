"""What the engine tells whoever is watching (the CLI's live view, a test, nothing at all)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slipway.model.states import State


class Observer(Protocol):
    """Receives progress as it happens. Every line it gets is already masked."""

    def stage_started(self, name: str, kind: str) -> None:
        """A stage began."""
        ...

    def stage_finished(self, name: str, state: State, duration: float, error: str | None) -> None:
        """A stage ended."""
        ...

    def step_started(self, host: str, label: str) -> None:
        """A step began on a host."""
        ...

    def output(self, host: str, stream: str, line: str) -> None:
        """A line of output of the running step on ``host``."""
        ...

    def step_finished(self, host: str, label: str, state: State, exit_code: int | None, duration: float) -> None:
        """A step ended on a host."""
        ...

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """Batch ``index`` (0-based) of ``total`` of a deployment's strategy began on ``hosts``."""
        ...

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        """Batch ``index`` ended; ``failed`` are its hosts that failed (and were dealt with)."""
        ...

    def message(self, text: str) -> None:
        """Anything else worth saying."""
        ...


class NullObserver:
    """Watches nothing."""

    def stage_started(self, name: str, kind: str) -> None:
        """Ignore."""

    def stage_finished(self, name: str, state: State, duration: float, error: str | None) -> None:
        """Ignore."""

    def step_started(self, host: str, label: str) -> None:
        """Ignore."""

    def output(self, host: str, stream: str, line: str) -> None:
        """Ignore."""

    def step_finished(self, host: str, label: str, state: State, exit_code: int | None, duration: float) -> None:
        """Ignore."""

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """Ignore."""

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        """Ignore."""

    def message(self, text: str) -> None:
        """Ignore."""
