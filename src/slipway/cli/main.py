"""``slipway``: the command line. Each command parses its input, calls a service and renders the result.

Exit codes (docs/cli.md): 0 success (a run parked at an approval gate also exits 0 and says so),
1 a run or command failed, 2 invalid configuration or usage, 4 artifact problem, 5 host unreachable or
refused, 6 deployment failed, 7 migration refused, 8 check failed, 9 gate or state forbids it (an older
artifact, a superseded run), 11 lock held by another process, 12 state store unavailable, 128+N stopped
by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from slipway import __version__
from slipway.cli import render as out
from slipway.cli.signals import Stopping
from slipway.config import CONFIG_NAME
from slipway.errors import ConfigError, SlipwayError
from slipway.model.states import State
from slipway.services import pipeline, report
from slipway.services.app import App, open_app
from slipway.services.source import head_difference
from slipway.services.validate import validate_project

T = TypeVar("T")
#: Exit code of an unexpected exception (sysexits' EX_SOFTWARE): never a traceback unless --debug.
INTERNAL_ERROR = 70
#: Options several commands share, declared once.
WaitingRun = Annotated[int, typer.Argument(metavar="RUN", help="The waiting run.")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit log.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")]
AllowOlder = Annotated[
    bool, typer.Option("--allow-older", help="Deploy even an artifact older than what an environment runs (needs --reason).")
]
OlderReason = Annotated[str | None, typer.Option("--reason", "-r", help="Why (with --allow-older); kept in the audit log.")]
cli = typer.Typer(
    name="slipway",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build once, deploy the same way everywhere.",
)


@dataclass
class Options:
    """Global options shared by every command."""

    config: Path | None = None
    database_url: str | None = None
    artifact_dir: str | None = None
    actor: str | None = None
    debug: bool = False
    json: bool = False


def _opts(ctx: typer.Context) -> Options:
    return ctx.ensure_object(Options)


def _open(ctx: typer.Context, *, json_mode: bool = False) -> App:
    o = _opts(ctx)
    o.json = json_mode
    console = out.make_console(stderr=json_mode)
    return open_app(
        config_path=o.config,
        observer=out.RichObserver(console),
        database_url=o.database_url,
        artifact_dir=o.artifact_dir,
        actor=o.actor,
    )


def _run_async(app: App, coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a command's coroutine; SIGINT, SIGTERM and SIGHUP stop it the same way (cli/signals.py)."""
    stop = Stopping(out.make_console(stderr=True))
    try:
        return asyncio.run(stop.guard(coro()))
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise stop.cancelled() from None
    finally:
        app.close()


@cli.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Path of slipway.yml (default: search upwards).")
    ] = None,
    database_url: Annotated[str | None, typer.Option(help="State store URL (overrides SLIPWAY_DATABASE_URL).")] = None,
    artifact_dir: Annotated[
        str | None, typer.Option(help="Artifact store directory (overrides SLIPWAY_ARTIFACT_DIR).")
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--as", help="Who is acting, for the audit log (overrides SLIPWAY_USER).")
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Build once, deploy the same way everywhere."""
    ctx.obj = Options(config=config, database_url=database_url, artifact_dir=artifact_dir, actor=actor, debug=debug)


@cli.command()
def version() -> None:
    """Print Slipway's version."""
    print(__version__)


@cli.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write slipway.yml.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing slipway.yml.")] = False,
) -> None:
    """Write a commented slipway.yml to start from."""
    target = directory / CONFIG_NAME
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists", hint="pass --force to overwrite it")
    text = resources.files("slipway").joinpath("templates/slipway.yml").read_text()
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}; check it with 'slipway validate'")


@cli.command()
def validate(ctx: typer.Context) -> None:
    """Check slipway.yml (keys, references, every hook's template) without running anything."""
    app = _open(ctx)
    summary = validate_project(app.config, environ=app.environ)
    print(f"{app.config.path} (working tree) is valid: {summary}")
    warning = head_difference(app)
    if warning:
        out.make_console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}")


@cli.command()
def run(
    ctx: typer.Context,
    commit: Annotated[str, typer.Option("--commit", help="The commit to build and deploy.")] = "HEAD",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; do nothing.")] = False,
    allow_dirty: Annotated[
        bool, typer.Option("--allow-dirty", help="Run the commit's slipway.yml even if the working tree's differs.")
    ] = False,
    allow_older: AllowOlder = False,
    reason: OlderReason = None,
    json_out: JsonOut = False,
) -> None:
    """Run the pipeline for a commit: build once, test, deploy, gate, promote."""
    app = _open(ctx, json_mode=json_out)
    if dry_run:
        for line in _dry_run(app, commit, allow_dirty=allow_dirty):
            print(line)
        return
    older = (reason or "") if allow_older else None
    outcome = _run_async(
        app, lambda: pipeline.start_run(app, rev=commit, allow_dirty=allow_dirty, allow_older=older)
    )
    _finish(app, outcome, json_out)


def _dry_run(app: App, commit: str, *, allow_dirty: bool) -> list[str]:
    from slipway.services.containers import describe_build
    from slipway.services.deployments import dry_run_lines
    from slipway.services.secrets import reached_environments, require_secrets
    from slipway.services.source import run_config
    from slipway.vcs import resolve_commit

    sha = resolve_commit(app.root, commit)
    loaded = run_config(app, sha, allow_dirty=allow_dirty)
    project = loaded.project
    require_secrets(loaded, reached_environments(project), environ=app.environ, what="this run")
    lines = [f"plan for {project.name} at commit {sha[:12]} (nothing will run):"]
    for i, stage in enumerate(project.pipeline, 1):
        lines.append(f"{i}. {stage.name} ({stage.kind.value})")
        if stage.kind.value == "build":
            lines += describe_build(project)
        elif stage.kind.value == "deploy" and stage.environment:
            lines += ["   " + x for x in dry_run_lines(loaded, stage.environment)]
        elif stage.kind.value == "approval":
            lines.append(
                "   wait for: slipway approve RUN --reason TEXT"
                + (f" (approvers: {', '.join(stage.approvers)})" if stage.approvers else "")
            )
        else:
            lines += [f"   $ {c}" for c in stage.run]
    return lines


def _finish(app: App, outcome: pipeline.RunOutcome, json_out: bool) -> None:
    run = app.store.get_run(outcome.run_id)
    data = report.run_dict(run)
    if json_out:
        print(json.dumps(data, indent=2))
    else:
        console = out.make_console()
        if outcome.state is State.WAITING:
            console.print(
                f"[cyan]run {run.id} is waiting for approval[/]: slipway approve {run.id} --reason TEXT "
                f"(or slipway reject {run.id} --reason TEXT)"
            )
        else:
            console.print(f"run {run.id} {outcome.state.value}; artifact {run.artifact_digest or '-'}")
    app.close()


@cli.command()
def approve(
    ctx: typer.Context,
    run_id: WaitingRun,
    reason: Reason,
    allow_older: AllowOlder = False,
    json_out: JsonOut = False,
) -> None:
    """Approve the gate a run waits at, and continue the run."""
    app = _open(ctx, json_mode=json_out)
    outcome = _run_async(app, lambda: pipeline.approve(app, run_id, reason=reason, allow_older=allow_older))
    _finish(app, outcome, json_out)


@cli.command()
def reject(
    ctx: typer.Context,
    run_id: WaitingRun,
    reason: Reason,
) -> None:
    """Reject the gate a run waits at (a parked canary: its hosts go back); the run ends as failed."""
    app = _open(ctx)
    outcome = _run_async(app, lambda: pipeline.reject(app, run_id, reason=reason))
    print(f"run {outcome.run_id} rejected")


@cli.command()
def promote(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(metavar="ARTIFACT_DIGEST", help="sha256:... of a built artifact.")],
    to: Annotated[str, typer.Option("--to", help="The environment to deploy it to.")],
    allow_older: AllowOlder = False,
    reason: OlderReason = None,
    json_out: JsonOut = False,
) -> None:
    """Deploy an artifact that already passed every stage before ENV, then ENV's stages after it. Never rebuilds."""
    app = _open(ctx, json_mode=json_out)
    older = (reason or "") if allow_older else None
    outcome = _run_async(app, lambda: pipeline.promote(app, digest, environment=to, allow_older=older))
    _finish(app, outcome, json_out)


@cli.command()
def rollback(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(metavar="ENV")],
    to: Annotated[
        str | None, typer.Option("--to", metavar="RELEASE", help="Release id (default: the previous one).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in the audit log.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Switch ENV back to an earlier release (no rebuild, no upload)."""
    app = _open(ctx, json_mode=json_out)
    outcome = _run_async(app, lambda: pipeline.rollback(app, environment, to_release=to, reason=reason))
    _finish(app, outcome, json_out)


@cli.command()
def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which release of which artifact runs on every environment and host."""
    app = _open(ctx, json_mode=json_out)
    try:
        data = report.status(app)
        if json_out:
            print(json.dumps(data, indent=2))
        else:
            console = out.make_console()
            console.print(out.status_table(data))
            if data["waiting_runs"]:
                console.print(f"waiting for approval: runs {', '.join(map(str, data['waiting_runs']))}")
    finally:
        app.close()


@cli.command()
def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recent runs with their stages, artifacts and approvals."""
    app = _open(ctx, json_mode=json_out)
    try:
        data = report.history(app, limit=limit)
        if json_out:
            print(json.dumps(data, indent=2))
        else:
            out.make_console().print(out.history_table(data))
    finally:
        app.close()


@cli.command()
def deployments(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Argument(metavar="[ENV]")] = None,
    limit: Annotated[int, typer.Option(help="How many deployments.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Recent deployments: kind, release, outcome, duration, who, why."""
    app = _open(ctx, json_mode=json_out)
    try:
        data = report.deployments(app, environment, limit=limit)
        if json_out:
            print(json.dumps(data, indent=2))
        else:
            out.make_console().print(out.deployments_table(data))
    finally:
        app.close()


@cli.command()
def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
) -> None:
    """The stored output of every step of a run, with timings and exit codes."""
    app = _open(ctx)
    try:
        app.store.get_run(run_id)
        console = out.make_console()
        current = None
        for stage_name, step in app.store.steps(run_id, stage=stage):
            if stage_name != current:
                console.rule(f"[bold]{escape(stage_name)}[/]", align="left")
                current = stage_name
            dur = f"{step.duration:.2f}s" if step.duration is not None else "-"
            code = f" exit {step.exit_code}" if step.exit_code is not None else ""
            console.print(
                f"{out.ICONS[step.state]} [magenta]\\[{escape(step.host)}][/] {escape(step.name)} [dim]{dur}{code}[/]"
            )
            for line in step.log.splitlines():
                console.print(f"    {escape(line)}")
        if current is None:
            console.print("no steps recorded" + (f" for stage {stage}" if stage else ""))
    finally:
        app.close()


@cli.command()
def unlock(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(metavar="ENV")],
    force: Annotated[
        bool, typer.Option("--force", help="Remove it even though its holder is alive (recorded in the audit log).")
    ] = False,
) -> None:
    """Remove an environment's deployment lock. A live holder's lock only with --force; both are audited."""
    from slipway.services import recovery

    app = _open(ctx)
    try:
        removed = recovery.unlock(app, environment, force=force)
        print(f"lock on {environment} removed" if removed else f"{environment} was not locked")
    finally:
        app.close()


@cli.command()
def resume(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="An interrupted or cancelled run.")],
    json_out: JsonOut = False,
) -> None:
    """Continue an interrupted or cancelled run from its first stage that did not finish."""
    app = _open(ctx, json_mode=json_out)
    outcome = _run_async(app, lambda: pipeline.resume(app, run_id))
    _finish(app, outcome, json_out)


from slipway.cli.migrations import migrations_app  # noqa: E402 - its commands reuse _open from above

cli.add_typer(migrations_app, name="migrations")

from slipway.cli.breakers import breakers_app  # noqa: E402 - its commands reuse _open from above

cli.add_typer(breakers_app, name="breakers")


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes and one clear paragraph; tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    err = out.make_console(stderr=True)
    try:
        cli(args=args)  # usage errors are Typer's: message and exit code 2
    except SlipwayError as exc:
        if debug:
            traceback.print_exc()
        err.print(f"[red]error:[/] {escape(str(exc))}")
        if exc.hint:
            err.print(f"[dim]→ {escape(exc.hint)}[/]")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # a bug of Slipway's, not the user's mistake: still one paragraph, no traceback
        if debug:
            traceback.print_exc()
        err.print(f"[red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}")
        err.print(
            "[dim]→ this is a bug in Slipway, not in your input; a run it was driving is recorded as failed. "
            "Run the command again with --debug and report the traceback[/]"
        )
        sys.exit(INTERNAL_ERROR)
    sys.exit(0)


if __name__ == "__main__":
    main()
