"""Rich rendering of live progress and of the store's views."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from slipway.cli.progress import LiveBoard
from slipway.model.states import State

if TYPE_CHECKING:
    from slipway.services.plan import RunPlan

ICONS = {
    State.SUCCEEDED: "[green]✓[/]",
    State.FAILED: "[red]✗[/]",
    State.CANCELLED: "[yellow]⊘[/]",
    State.INTERRUPTED: "[magenta]↯[/]",
    State.WAITING: "[cyan]⏸[/]",
    State.QUEUED: "[yellow]⧗[/]",
    State.SKIPPED: "[dim]-[/]",
    State.SUPERSEDED: "[dim]⤼[/]",
    State.RUNNING: "[blue]…[/]",
    State.PENDING: "[dim]·[/]",
}


class RichObserver:
    """Streams stages, steps and their output as they happen, host-prefixed; a deployment's batches and
    hosts also on a live board when the output is a terminal (:mod:`slipway.cli.progress`)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.board = LiveBoard(console)

    def stage_started(self, name: str, kind: str) -> None:
        """Print a stage header."""
        self.console.rule(f"[bold]{escape(name)}[/] [dim]({kind})[/]", align="left")

    def stage_finished(self, name: str, state: State, duration: float, error: str | None) -> None:
        """Print how the stage ended."""
        self.board.stop()
        self.console.print(f"{ICONS[state]} stage [bold]{escape(name)}[/] {state.value} in {duration:.1f}s")

    def batch_started(self, index: int, total: int, kind: str, hosts: Sequence[str]) -> None:
        """A batch of the strategy began: on the board (or one line)."""
        self.board.batch_started(index, total, kind, hosts)

    def batch_finished(self, index: int, total: int, failed: Sequence[str], duration: float) -> None:
        """A batch ended: on the board, and one line."""
        self.board.batch_finished(index, total, failed, duration)

    def step_started(self, host: str, label: str) -> None:
        """Print the step being started."""
        self.board.step(host, label, State.RUNNING)
        self.console.print(f"[blue]▶[/] [magenta]\\[{escape(host)}][/] {escape(label)}")

    def output(self, host: str, stream: str, line: str) -> None:
        """Print one line of output."""
        style = "red" if stream == "stderr" else "dim"
        self.console.print(f"  [magenta]\\[{escape(host)}][/] [{style}]{escape(line)}[/]", highlight=False)

    def step_finished(self, host: str, label: str, state: State, exit_code: int | None, duration: float) -> None:
        """Print the step's result."""
        if state is not State.SUCCEEDED:
            self.board.step(host, label, state)
        code = f" (exit {exit_code})" if exit_code not in (0, None) else ""
        self.console.print(
            f"{ICONS[state]} [magenta]\\[{escape(host)}][/] {escape(label)}{code} [dim]{duration:.2f}s[/]"
        )

    def message(self, text: str) -> None:
        """Print a note."""
        self.console.print(f"[cyan]•[/] {escape(text)}")


def make_console(*, stderr: bool = False) -> Console:
    """A console that does not wrap at 80 columns when the output is a file or a pipe (CI logs)."""
    probe = Console(stderr=stderr)
    return Console(
        stderr=stderr, highlight=False, width=None if probe.is_terminal else 160, soft_wrap=not probe.is_terminal
    )


def ago(ts: float | None) -> str:
    """A timestamp as local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def status_table(data: dict[str, Any]) -> Table:
    """Which release runs where."""
    unreadable = [
        f"{env['name']}: router state unknown: {env['router']['error']}"
        for env in data["environments"]
        if env.get("router") and env["router"]["error"]
    ]
    table = Table(title=f"{data['project']}: what runs where", caption=escape("\n".join(unreadable)) or None)
    for col in ("environment", "release", "artifact", "commit", "deployed", "run", "hosts"):
        table.add_column(col)
    for env in data["environments"]:
        hosts = ", ".join(
            f"{escape(h['name'])}={h['release'] or '-'}{_slots(h)}{_rotation(h.get('router'))}" for h in env["hosts"]
        )
        table.add_row(
            env["name"],
            env["release"] or "-",
            (env["artifact_digest"] or "-")[:19],
            (env["commit"] or "-")[:12],
            ago(env["deployed_at"]),
            str(env["run_id"] or "-"),
            hosts,
        )
    return table


def queue_lines(data: dict[str, Any]) -> list[str]:
    """Under the status table: the runs queued for each environment, next first (an older server: none)."""
    lines = []
    for env in data["environments"]:
        queued = [
            f"run {q['run_id']} (commit {q['commit'][:12]}, queued since {ago(q['since'])})" for q in env.get("queue") or []
        ]
        if queued:
            lines.append(f"{ICONS[State.QUEUED]} {escape(env['name'])} is busy; queued: " + ", ".join(queued))
    return lines


def _rotation(state: str | None) -> str:
    """`` (in rotation)`` after a host behind a router; its other states stand out."""
    if state is None:
        return ""
    return f" ({state})" if state == "in rotation" else f" ([bold red]{state}[/])"


def _slots(host: dict[str, Any]) -> str:
    """Blue/green: `` (blue; warm green: R)`` after a host's release."""
    slots = host.get("slots") or {}
    serving = [name for name, slot in slots.items() if slot["serving"]]
    warm = [f"warm {name}: {slot['release']}" for name, slot in slots.items() if not slot["serving"]]
    return f" ({'; '.join(serving + warm)})" if slots else ""


def history_table(runs: list[dict[str, Any]]) -> Table:
    """Recent runs."""
    table = Table(title="runs")
    for col in ("run", "kind", "state", "commit", "artifact", "started", "by", "stages"):
        table.add_column(col)
    for run in runs:
        stages = " ".join(f"{ICONS[State(s['state'])]}{escape(s['name'])}" for s in run["stages"])
        table.add_row(
            str(run["id"]),
            run["kind"],
            run["state"],
            run["commit"][:12],
            (run["artifact_digest"] or "-")[:19],
            ago(run["created_at"]),
            escape(run["triggered_by"]),
            stages,
        )
    return table


def deployments_table(rows: list[dict[str, Any]]) -> Table:
    """Recent deployments."""
    table = Table(title="deployments")
    for col in ("id", "environment", "kind", "strategy", "release", "state", "started", "duration", "by", "reason"):
        table.add_column(col)
    for d in rows:
        dur = f"{d['duration']:.1f}s" if d["duration"] is not None else "-"
        table.add_row(
            str(d["id"]),
            d["environment"],
            d["kind"],
            d.get("strategy") or "-",
            d["release"],
            d["state"],
            ago(d["started_at"]),
            dur,
            escape(d["deployed_by"]),
            escape(d["reason"] or ""),
        )
    return table


def plan_lines(plan: RunPlan) -> list[str]:
    """``run --dry-run``: the plan, numbered by stage, each action indented under its stage."""
    lines = [f"plan for {plan.project} at commit {plan.commit[:12]} (nothing will run):"]
    for i, stage in enumerate(plan.stages, 1):
        lines.append(f"{i}. {stage.name} ({stage.kind.value})")
        lines += [f"   {action}" for action in stage.actions]
    return lines


def print_logs(console: Console, steps: Sequence[dict[str, Any]], stage: str | None = None) -> None:
    """``slipway logs``: each stage as a rule, each step (``report.step_dict``: from the store or a server)
    with its host, timing, exit code and output."""
    current = None
    for step in steps:
        if step["stage"] != current:
            console.rule(f"[bold]{escape(step['stage'])}[/]", align="left")
            current = step["stage"]
        dur = f"{step['duration']:.2f}s" if step["duration"] is not None else "-"
        code = f" exit {step['exit_code']}" if step["exit_code"] is not None else ""
        icon = ICONS[State(step["state"])]
        console.print(f"{icon} [magenta]\\[{escape(step['host'])}][/] {escape(step['name'])} [dim]{dur}{code}[/]")
        for line in step["log"].splitlines():
            console.print(f"    {escape(line)}")
    if current is None:
        console.print("no steps recorded" + (f" for stage {stage}" if stage else ""))
