"""``slipway migrations ...``: lint migration files, show an environment's migrations, run held contracts,
abandon a broken backfill."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slipway.cli.common import Environment, JsonView, Reason, console, open_app, options, run_async

if TYPE_CHECKING:
    from rich.console import Console

    from slipway.services.migration_lint import Finding

migrations_app = typer.Typer(
    name="migrations",
    no_args_is_help=True,
    help="Database migrations: lint, status, contract, abandon (docs/migrations.md).",
)


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
    from slipway.errors import MigrationError
    from slipway.services.migration_lint import DIALECTS
    from slipway.services.migration_lint import lint as lint_files

    if dialect not in DIALECTS:
        raise typer.BadParameter(f"{dialect!r} is not one of: postgres, sqlite", param_hint="--dialect")
    report = lint_files(path, dialect=dialect, config_path=options(ctx).config)
    findings = report.findings
    if json_out:
        import json

        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        out = console()
        for f in findings:
            _print_finding(out, f)
        files = len({f.file for f in findings})
        out.print(f"{len(findings)} finding(s) in {files} file(s)" if findings else f"{report.directory}: no findings")
    if findings:
        raise typer.Exit(MigrationError.exit_code)


def _print_finding(out: Console, f: Finding) -> None:
    """One finding: where, the rule, the lock and what it blocks or what breaks, the fix and the docs."""
    from rich.markup import escape

    out.print(f"[red]{escape(f.file)}:{f.line}[/]: [bold]{f.rule}[/] {f.name} ({f.severity}): {escape(f.message)}")
    out.print(f"    [dim]statement:[/] {escape(f.statement.splitlines()[0] if f.statement else '')}")
    if f.lock:
        on = f" on {f.table}" if f.table else ""
        out.print(f"    [dim]lock:[/] {escape(f.lock)}{escape(on)}, [dim]blocks:[/] {escape(f.blocks or '')}")
    if f.breaks:
        out.print(f"    [dim]breaks in the release still running:[/] {escape(f.breaks)}")
    if not (f.lock or f.breaks):
        out.print(f"    [dim]why:[/] {escape(f.why)}")
    out.print(f"    [dim]fix:[/] {escape(f.fix)}")
    out.print(f"    [dim]docs:[/] {escape(f.docs)}")
    out.print(f'    [dim]or, if it is safe here:[/] -- slipway:allow {f.rule} reason="..."')


@migrations_app.command("status")
def status(ctx: typer.Context, environment: Environment, json_out: JsonView = False) -> None:
    """Applied, pending, in-progress and held migrations of ENV's database, with who ran them and when."""
    from slipway.services import migration_status as service

    app = open_app(ctx, json_mode=json_out)
    rows = run_async(app, lambda: service.environment_status(app, app.config, environment))
    if json_out:
        import json

        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"migrations of {environment}")
    for col in ("phase", "version", "name", "state", "applied at (UTC)", "by", "release", "note"):
        table.add_column(col)
    for r in rows:
        notes = [r.held_because or "", *(f"allowed {o['rule']}: {o['reason']}" for o in r.overrides)]
        if r.progress is not None:
            p = r.progress
            notes.append(f"{p['batches']} batches, {p['rows']} rows, up to key {p['last_key']} at {p['updated_at']}")
        notes.append(r.note or "")
        table.add_row(
            r.phase,
            str(r.version),
            escape(r.name),
            r.state,
            r.applied_at or "-",
            escape(r.applied_by or "-"),
            r.release or "-",
            escape("; ".join(n for n in notes if n)),
        )
    console().print(table if rows else f"{environment}: no migrations known")


@migrations_app.command("contract")
def contract(ctx: typer.Context, environment: Environment) -> None:
    """Run ENV's pending contract migrations that are no longer held (for ``contract: manual``)."""
    from slipway.services import migrations as service

    app = open_app(ctx)
    done = run_async(app, lambda: service.contract_now(app, app.config, environment))
    if done:
        names = ", ".join(Path(path).name for path in done)
        console().print(f"applied {len(done)} contract migration(s): {names}")
    else:
        console().print(f"no contract migration of {environment} was due ('slipway migrations status {environment}')")


@migrations_app.command("abandon")
def abandon(
    ctx: typer.Context,
    environment: Environment,
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The migrate file's version (its number).")],
    reason: Reason,
) -> None:
    """Give up ENV's backfill VERSION in progress: forget its progress row, so a fixed file runs from the start."""
    from slipway.services import migration_status as service

    app = open_app(ctx)
    progress = run_async(app, lambda: service.abandon(app, app.config, environment, version, reason=reason))
    console().print(
        f"abandoned the backfill of migration {version} in {environment} after {progress.batches} batches "
        f"({progress.rows} rows, up to key {progress.last_key}): those rows stay changed; the version is pending "
        "and the next deployment runs its file from the first key"
    )
