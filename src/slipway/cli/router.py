"""``slipway router bootstrap ENV [--adopt]``: the router's include file, before nginx first starts."""

from __future__ import annotations

from typing import Annotated

import typer

from slipway.cli.common import Environment, open_app, run_async

router_app = typer.Typer(help="The environment's router (nginx): set it up on a new server.", no_args_is_help=True)


@router_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    environment: Environment,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Replace an include file Slipway did not write (a placeholder written so that nginx could "
            "start); recorded in the audit log.",
        ),
    ] = False,
) -> None:
    """Write ENV's router include file so that nginx can start; a file Slipway wrote is left as it is.

    The upstream lists what is deployed now, or a placeholder marked down (502 until the first deployment).
    """
    from slipway.services.router import bootstrap_router

    app = open_app(ctx)
    for done in run_async(app, lambda: bootstrap_router(app, environment, adopt=adopt)):
        print(f"router: {done.summary()}")
