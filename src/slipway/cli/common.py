"""The plumbing every command shares: global options, opening the App, running a command's coroutine,
printing how a run ended, and the options several commands declare alike.

Only typer is imported at module level: a command imports the services, Rich and the store when it runs,
so that ``slipway --help`` and ``slipway version`` load none of them (docs/cli.md, BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from slipway.services.app import App
    from slipway.services.pipeline import RunOutcome
    from slipway.services.remote import Remote

T = TypeVar("T")
#: Options several commands share, declared once.
WaitingRun = Annotated[int, typer.Argument(metavar="RUN", help="The waiting run.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit log.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")]
JsonView = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Environment = Annotated[str, typer.Argument(metavar="ENV")]
AllowOlder = Annotated[
    bool, typer.Option("--allow-older", help="Deploy even an artifact older than what an environment runs (needs --reason).")
]
OverrideFreeze = Annotated[
    str | None,
    typer.Option(
        "--override-freeze",
        metavar="REASON",
        help="Deploy even inside a freeze of the environment, for this reason (kept in the audit log; "
        "on a server it needs the admin role there).",
    ),
]
OlderReason = Annotated[str | None, typer.Option("--reason", "-r", help="Why (with --allow-older); kept in the audit log.")]


@dataclass
class Options:
    """Global options shared by every command."""

    config: Path | None = None
    database_url: str | None = None
    artifact_dir: str | None = None
    actor: str | None = None
    debug: bool = False
    json: bool = False
    server: str | None = None
    project: str | None = None


def options(ctx: typer.Context) -> Options:
    """The global options of this invocation."""
    return ctx.ensure_object(Options)


def console(*, stderr: bool = False) -> Console:
    """A console for a command's output (:func:`slipway.cli.render.make_console`)."""
    from slipway.cli.render import make_console

    return make_console(stderr=stderr)


def open_app(ctx: typer.Context, *, json_mode: bool = False) -> App:
    """Load slipway.yml and wire the App with the global options; progress goes to stderr with ``--json``."""
    from slipway.cli.render import RichObserver
    from slipway.services.app import open_app as wire

    o = options(ctx)
    o.json = json_mode
    return wire(
        config_path=o.config,
        observer=RichObserver(console(stderr=json_mode)),
        database_url=o.database_url,
        artifact_dir=o.artifact_dir,
        as_override=o.actor,
    )


def remote(ctx: typer.Context) -> Remote | None:
    """The server this command talks to (``--server`` or SLIPWAY_SERVER), or None for the local store."""
    import os

    o = options(ctx)
    url = o.server or os.environ.get("SLIPWAY_SERVER")
    if not url:
        return None
    from slipway.errors import ConfigError
    from slipway.services.remote import connect

    if o.actor:
        raise ConfigError(
            "--as cannot be used with a server: the server records the user its token belongs to",
            hint="drop --as, or use the local store (no --server, SLIPWAY_SERVER unset)",
        )
    return connect(url, dict(os.environ), project=o.project, local_project=_local_project(o.config))


def _local_project(config: Path | None) -> str | None:
    """The name in the nearest slipway.yml, if there is one (the project to address on a server)."""
    from slipway.config import find_config, load_config
    from slipway.errors import ConfigError

    try:
        return load_config(config or find_config(Path.cwd())).project.name
    except ConfigError:
        return None


def follow(server: Remote, run: dict[str, Any], json_out: bool) -> None:
    """Print a run the server drives as it happens, then how it ended (as :func:`finish` does)."""
    from slipway.cli.render import RichObserver

    final = server.follow(run["id"], RichObserver(console(stderr=json_out)))
    print_outcome(final, json_out)


def run_async(app: App, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; SIGINT, SIGTERM and SIGHUP stop it the same way (cli/signals.py)."""
    import asyncio

    from slipway.cli.signals import Stopping

    stop = Stopping(console(stderr=True))
    try:
        return asyncio.run(stop.guard(coro()))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise stop.cancelled() from None
    finally:
        app.close()


def finish(app: App, outcome: RunOutcome, json_out: bool) -> None:
    """Print how a run ended (or where it waits), as one line or as JSON."""
    from slipway.services.queries import get_run
    from slipway.services.report import run_dict

    try:
        run = get_run(app, outcome.run_id)
    finally:
        app.close()
    print_outcome({**run_dict(run), "state": outcome.state.value}, json_out)


def print_outcome(run: dict[str, Any], json_out: bool) -> None:
    """How a run ended (or where it waits), as one line or as JSON (``report.run_dict``)."""
    import json

    if json_out:
        print(json.dumps(run, indent=2))
    elif run["state"] == "superseded":
        why = run["error"] or "superseded"
        console().print(f"run {run['id']} was {why}; it deployed nothing more", style="yellow", markup=False)
    elif run["state"] == "waiting":
        console().print(
            f"[cyan]run {run['id']} is waiting for approval[/]: slipway approve {run['id']} --reason TEXT "
            f"(or slipway reject {run['id']} --reason TEXT)"
        )
    else:
        console().print(f"run {run['id']} {run['state']}; artifact {run['artifact_digest'] or '-'}")
    if run["state"] == "superseded":  # a newer run took its place in a queue: its artifact did not go out
        from slipway.errors import GateError

        raise typer.Exit(GateError.exit_code)


def listed(
    ctx: typer.Context, json_out: bool, read: Callable[[App], list[dict[str, Any]]], *, empty: str
) -> list[dict[str, Any]] | None:
    """The rows a listing command shows, read through ``read`` with the store closed after; None when they
    were printed already (``--json``) or there are none (``empty`` says so)."""
    app = open_app(ctx, json_mode=json_out)
    try:
        rows = read(app)
    finally:
        app.close()
    if json_out:
        import json

        print(json.dumps(rows, indent=2))
        return None
    if not rows:
        console().print(empty)
        return None
    return rows
