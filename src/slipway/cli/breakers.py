"""``slipway breakers [--json]`` and ``slipway breakers reset NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

from slipway.cli.common import JsonView, console, listed, open_app

breakers_app = typer.Typer(
    help="Circuit breakers of the environments' dependencies (docs/checks.md).", no_args_is_help=False
)

_STYLE = {"closed": "green", "open": "red", "half_open": "yellow"}


@breakers_app.callback(invoke_without_command=True)
def list_breakers(ctx: typer.Context, json_out: JsonView = False) -> None:
    """List every breaker: state, since when, why, and when the next trial check may run."""
    if ctx.invoked_subcommand is not None:
        return
    from slipway.services import breakers

    rows = listed(ctx, json_out, breakers.list_breakers, empty="no dependencies are declared and no breaker is stored")
    if rows is None:
        return
    from rich.markup import escape
    from rich.table import Table

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
    console().print(table)


@breakers_app.command()
def reset(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="ENV/DEPENDENCY as listed (or just DEPENDENCY).")],
) -> None:
    """Close a breaker now (empty window); recorded in the audit log with who did it."""
    from slipway.services import breakers

    app = open_app(ctx)
    try:
        done = breakers.reset_breaker(app, name)
    finally:
        app.close()
    was = done["was"].replace("_", "-")
    print(f"breaker {done['name']} closed (was {was})")
