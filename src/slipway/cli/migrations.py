"""``slipway migrations ...``: lint migration files, show an environment's migrations, run held contracts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from slipway.cli import render as out
from slipway.errors import ConfigError, MigrationError
from slipway.migrations import Dialect
from slipway.services import migrations as service

migrations_app = typer.Typer(
    name="migrations",
    no_args_is_help=True,
    help="Database migrations: lint, status, contract (docs/migrations.md).",
)


def _check_environment(app: Any, environment: str) -> None:
    envs = app.config.project.environments
    if environment not in envs:
        raise ConfigError(f"environment {environment!r} is not defined", hint="defined: " + ", ".join(sorted(envs)))


@migrations_app.command("lint")
def lint(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Argument(metavar="[PATH]", help="Directory of migrations (default: migrations.directory).")
    ] = None,
    dialect: Annotated[str, typer.Option(help="postgres or sqlite: which database's rules apply.")] = "postgres",
    json_out: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Check migration files against the lint rules; exit 7 when a finding has no override."""
    from slipway.cli.main import _opts
    from slipway.config import find_config, load_config

    if dialect not in {d.value for d in Dialect}:
        raise typer.BadParameter(f"{dialect!r} is not one of: postgres, sqlite", param_hint="--dialect")
    if path is None:
        loaded = load_config((_opts(ctx).config or find_config(Path.cwd())).resolve())
        if loaded.project.migrations is None:
            raise MigrationError(
                "slipway.yml has no 'migrations' section", hint="pass the directory: slipway migrations lint PATH"
            )
        path = loaded.root / loaded.project.migrations.directory
    findings = service.lint_directory(path, dialect=dialect)
    if json_out:
        keys = ("rule", "name", "file", "line", "message", "fix", "statement")
        print(json.dumps([{k: getattr(f, k) for k in keys} for f in findings], indent=2))
    else:
        console = out.make_console()
        for f in findings:
            console.print(f"[red]{escape(f.file)}:{f.line}[/]: [bold]{f.rule}[/] {f.name}: {escape(f.message)}")
            console.print(f"    [dim]statement:[/] {escape(f.statement.splitlines()[0] if f.statement else '')}")
            console.print(f"    [dim]fix:[/] {escape(f.fix)}")
            console.print(f'    [dim]or, if it is safe here:[/] -- slipway:allow {f.rule} reason="..."')
        files = len({f.file for f in findings})
        console.print(f"{len(findings)} finding(s) in {files} file(s)" if findings else f"{path}: no findings")
    if findings:
        raise typer.Exit(MigrationError.exit_code)


@migrations_app.command("status")
def status(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(metavar="ENV")],
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Applied, pending and held migrations of ENV's database, by phase, with who ran them and when."""
    from slipway.cli.main import _open, _run_async

    app = _open(ctx, json_mode=json_out)
    _check_environment(app, environment)
    rows = _run_async(app, lambda: service.environment_status(app, app.config, environment))
    if json_out:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title=f"migrations of {environment}")
    for col in ("phase", "version", "name", "state", "applied at (UTC)", "by", "release", "note"):
        table.add_column(col)
    for r in rows:
        note = r.held_because or "; ".join(f"allowed {o['rule']}: {o['reason']}" for o in r.overrides)
        table.add_row(
            r.phase,
            str(r.version),
            escape(r.name),
            r.state,
            r.applied_at or "-",
            escape(r.applied_by or "-"),
            r.release or "-",
            escape(note),
        )
    out.make_console().print(table if rows else f"{environment}: no migrations known")


@migrations_app.command("contract")
def contract(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(metavar="ENV")],
) -> None:
    """Run ENV's pending contract migrations that are no longer held (for ``contract: manual``)."""
    from slipway.cli.main import _open, _run_async

    app = _open(ctx)
    _check_environment(app, environment)
    done = _run_async(app, lambda: service.contract_now(app, app.config, environment))
    console = out.make_console()
    if done:
        console.print(f"applied {len(done)} contract migration(s): " + ", ".join(Path(r.path).name for r in done))
    else:
        console.print(f"no contract migration of {environment} was due ('slipway migrations status {environment}')")
