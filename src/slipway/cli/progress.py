"""Live progress of a deployment by batch and host: a Rich table on a terminal, plain lines elsewhere.

On a terminal the board redraws in place under the streamed output: every batch of the strategy, and for
each host its state, the step it is on and for how long. In a file or a pipe (CI logs, tests) nothing is
redrawn: each batch says when it starts and how it ended, one line each, like every other event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from slipway.model.states import State

ICON = {
    State.PENDING: "[dim]·[/]",
    State.RUNNING: "[blue]…[/]",
    State.SUCCEEDED: "[green]✓[/]",
    State.FAILED: "[red]✗[/]",
    State.CANCELLED: "[yellow]⊘[/]",
    State.INTERRUPTED: "[magenta]↯[/]",
}


@dataclass
class HostRow:
    """One host on the board."""

    batch: int
    state: State = State.PENDING
    step: str = ""
    since: float = 0.0


@dataclass
class Board:
    """What the board shows: the batches, and each host's state and step (no I/O)."""

    total: int = 0
    kinds: dict[int, str] = field(default_factory=dict)
    hosts: dict[str, HostRow] = field(default_factory=dict)
    done: dict[int, float] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def start_batch(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """A batch began: its hosts are on the board, running."""
        self.total, self.kinds[index] = total, kind
        for host in hosts:
            self.hosts[host] = HostRow(index, State.RUNNING, "", self.clock())

    def finish_batch(self, index: int, failed: Sequence[str], duration: float) -> None:
        """A batch ended: its hosts succeeded or failed."""
        self.done[index] = duration
        for host, row in self.hosts.items():
            if row.batch == index:
                row.state, row.step = (State.FAILED, row.step) if host in failed else (State.SUCCEEDED, "")

    def step(self, host: str, label: str, state: State) -> None:
        """A step of ``host`` started (RUNNING) or failed: show it on the host's row."""
        row = self.hosts.get(host)
        if row is None or row.state is not State.RUNNING:
            return
        row.step = label if state is State.RUNNING else f"{label} ({state.value})"
        row.since = self.clock() if state is State.RUNNING else row.since

    def render(self) -> RenderableType:
        """The board as a table: one row per host, grouped by batch."""
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("batch", "host", "", "step", "time"):
            table.add_column(column)
        now = self.clock()
        for host, row in sorted(self.hosts.items(), key=lambda item: item[1].batch):
            batch = f"{row.batch + 1}/{self.total} {self.kinds.get(row.batch, '')}"
            took = f"{self.done[row.batch]:.1f}s" if row.batch in self.done else f"{now - row.since:.1f}s"
            table.add_row(batch, escape(host), ICON[row.state], escape(row.step[:80]), took)
        return table


def batch_started_line(index: int, total: int, kind: str, hosts: Sequence[str]) -> str:
    """The line a log gets when a batch starts."""
    return f"batch {index + 1} of {total} ({kind}): {', '.join(hosts)}"


def batch_finished_line(index: int, total: int, hosts: int, failed: Sequence[str], duration: float) -> str:
    """The line a log gets when a batch ends."""
    bad = f", {len(failed)} failed ({', '.join(failed)})" if failed else ""
    return f"batch {index + 1} of {total} done in {duration:.1f}s: {hosts - len(failed)} ok{bad}"


class LiveBoard:
    """The board on a terminal (redrawn in place), or its lines when the output is not a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.board = Board()
        self.live: Live | None = None
        self.sizes: dict[int, int] = {}

    @property
    def is_live(self) -> bool:
        """Whether the board redraws in place (a terminal)."""
        return self.console.is_terminal

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """Show a batch starting."""
        self.sizes[index] = len(hosts)
        self.board.start_batch(index, total, kind, hosts)
        if not self.is_live:
            self.console.print(f"[cyan]•[/] {escape(batch_started_line(index, total, kind, hosts))}")
            return
        if self.live is None:
            self.live = Live(self.board.render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        self.refresh()

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        """Show how a batch ended."""
        self.board.finish_batch(index, failed, duration)
        line = batch_finished_line(index, total, self.sizes.get(index, 0), failed, duration)
        self.console.print(f"[cyan]•[/] {escape(line)}")
        self.refresh()

    def step(self, host: str, label: str, state: State) -> None:
        """Show a host's step."""
        self.board.step(host, label, state)
        self.refresh()

    def refresh(self) -> None:
        """Redraw (on a terminal)."""
        if self.live is not None:
            self.live.update(self.board.render())

    def stop(self) -> None:
        """Leave the last state on screen and stop redrawing; the next deployment starts a new board."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        self.board = Board()
        self.sizes = {}
