"""``slipway app status|logs|start ENV``: the app's services on an environment's hosts (docs/services-on-hosts.md)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer

from slipway.cli.common import Environment, JsonView, console, open_app

T = TypeVar("T")
app_cli = typer.Typer(
    help="The app's services on an environment's hosts: which run where, their logs, and starting them after a reboot.",
    no_args_is_help=True,
)


@app_cli.command("status")
def status(ctx: typer.Context, environment: Environment, json_out: JsonView = False) -> None:
    """Each host's services: state, pid, uptime and the release each process runs. Exit 1 unless all run current."""
    from slipway.services.app_processes import app_status

    app = open_app(ctx, json_mode=json_out)
    hosts = _interruptible(app, lambda: app_status(app, environment))
    assert hosts is not None
    _report(hosts, json_out=json_out)


@app_cli.command("start")
def start(ctx: typer.Context, environment: Environment, json_out: JsonView = False) -> None:
    """Start each host's supervisord and every service of its current release, as after a reboot (what runs
    already is left alone); recorded in the audit log. Then the status, as 'app status'. Exit 1 unless all run."""
    from slipway.services.app_processes import app_start

    app = open_app(ctx, json_mode=json_out)
    hosts = _interruptible(app, lambda: app_start(app, environment))
    assert hosts is not None
    _report(hosts, json_out=json_out)


def _report(hosts: list[Any], *, json_out: bool) -> None:
    """Each host's services, as a table or JSON; exit 1 unless every process runs the current release."""
    if json_out:
        import json
        from dataclasses import asdict

        print(json.dumps([{**asdict(h), "ok": h.ok} for h in hosts], indent=2))
    else:
        console().print(_status_table(hosts))
    if not all(h.ok for h in hosts):
        raise typer.Exit(1)


def _status_table(hosts: list[Any]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("host", "process", "state", "pid", "uptime", "release"):
        table.add_column(col)
    for h in hosts:
        if h.note:
            table.add_row(escape(h.host), "-", f"[yellow]{escape(h.note)}[/]", "", "", escape(h.current or "-"))
        for p in h.processes:
            colour = "green" if p.state == "RUNNING" else "red"
            release = p.release or "-"
            if p.release and p.release != h.current:
                release += f" [yellow](current: {escape(h.current or '-')})[/]"
            state = f"[{colour}]{p.state}[/]" + (f" {escape(p.detail)}" if p.detail else "")
            table.add_row(escape(h.host), escape(f"{p.service}:{p.process}"), state, str(p.pid or "-"),
                          p.uptime or "-", release)
    return table


@app_cli.command("logs")
def logs(
    ctx: typer.Context,
    environment: Environment,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service (default: all).")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines of each log to show first.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Go on showing new lines until Ctrl-C.")] = False,
) -> None:
    """The services' logs on each host, each line prefixed with the host and the process (web-0)."""
    from rich.markup import escape

    from slipway.services.app_processes import app_logs

    def show(host: str, source: str, line: str) -> None:
        print(f"{host} {source} | {line}", flush=True)

    app = open_app(ctx)
    outcomes = _interruptible(
        app, lambda: app_logs(app, environment, on_line=show, service=service, lines=lines, follow=follow),
        ends_by_signal=follow,
    )
    if outcomes is None:
        return  # stopped: Ctrl-C is how --follow ends
    failed = [(host, why) for host, why in outcomes if why]
    for host, why in failed:
        console(stderr=True).print(f"[red]✗[/] {escape(host)}: {escape(why)}")
    if failed:
        raise typer.Exit(1)


def _interruptible(app: Any, coro: Callable[[], Coroutine[Any, Any, T]], *, ends_by_signal: bool = False) -> T | None:
    """Run ``coro``; SIGINT, SIGTERM or SIGHUP stops it, and the hosts' commands with it. Stopped: None when
    that is how the command ends (``--follow``), else exit 128 + the signal."""
    import asyncio

    received: list[signal.Signals] = []

    async def guarded() -> T:
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def stop(sig: signal.Signals) -> None:
            received.append(sig)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop, sig)
        return await coro()

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        sig = received[0] if received else signal.SIGINT
        console(stderr=True).print(f"[yellow]stopped[/] ({sig.name})")
        if ends_by_signal:
            return None
        raise typer.Exit(128 + sig.value) from None
    finally:
        app.close()
