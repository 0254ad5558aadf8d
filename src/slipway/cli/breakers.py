"""``slipway breakers [--json]`` and ``slipway breakers reset NAME``."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from slipway.services import breakers

breakers_app = typer.Typer(
    help="Circuit breakers of the environments' dependencies (docs/checks.md).", no_args_is_help=False
)

_STYLE = {"closed": "green", "open": "red", "half_open": "yellow"}


@breakers_app.callback(invoke_without_command=True)
def list_breakers(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every breaker: state, since when, why, and when the next trial check may run."""
    if ctx.invoked_subcommand is not None:
        return
    from slipway.cli.main import _open  # main registers this app, so import it at call time
    from slipway.cli.render import make_console

    app = _open(ctx, json_mode=json_out)
    try:
        rows = breakers.list_breakers(app)
        if json_out:
            print(json.dumps(rows, indent=2))
            return
        console = make_console()
        if not rows:
            console.print("no dependencies are declared and no breaker is stored")
            return
        table = Table(box=None, header_style="bold")
        for col in ("breaker", "state", "since", "failures", "next trial", "reason"):
            table.add_column(col)
        for row in rows:
            style = _STYLE.get(row["status"], "")
            table.add_row(
                escape(row["name"]),
                f"[{style}]{row['status']}[/]",
                row["since"] or "-",
                f"{row['failures']}/{row['outcomes']}",
                row["next_trial"] or "-",
                escape(row["reason"] or ("never checked" if not row["checked"] else "")),
            )
        console.print(table)
    finally:
        app.close()


@breakers_app.command()
def reset(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="ENV/DEPENDENCY as listed (or just DEPENDENCY).")],
) -> None:
    """Close a breaker now (empty window); recorded in the audit log with who did it."""
    from slipway.cli.main import _open

    app = _open(ctx)
    try:
        done = breakers.reset_breaker(app, name)
        was = done["was"].replace("_", "-")
        print(f"breaker {done['name']} closed (was {was})")
    finally:
        app.close()
