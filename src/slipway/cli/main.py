"""``slipway``: the command line. Each command parses its input, calls a service and renders the result.

Exit codes (docs/cli.md): 0 success (a run parked at an approval gate also exits 0 and says so),
1 a run or command failed, 2 invalid configuration or usage, 4 artifact problem, 5 host unreachable or
refused, 6 deployment failed, 7 migration refused, 8 check failed, 9 gate or state forbids it (an older
artifact, a superseded run, also one superseded while queued), 11 lock held by another process (with queue:
when_busy: fail, or a queued run that waited its stage's timeout), 12 state store unavailable, 128+N stopped
by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).

Start-up: this module imports typer and nothing heavy; each command imports the services (and through
them SQLAlchemy, pydantic, the models) and Rich inside its body, so ``--help`` and ``version`` stay fast.
tests/core/test_cli_startup.py pins that.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from slipway import __version__
from slipway.cli.app_commands import app_cli
from slipway.cli.breakers import breakers_app
from slipway.cli.common import (
    AllowOlder,
    Environment,
    JsonOut,
    JsonView,
    OlderReason,
    Options,
    OverrideFreeze,
    Reason,
    WaitingRun,
    console,
    finish,
    follow,
    open_app,
    remote,
    run_async,
)
from slipway.cli.migrations import migrations_app
from slipway.cli.review import review_app
from slipway.cli.router import router_app
from slipway.cli.server import serve, users_app
from slipway.errors import SlipwayError

#: Exit code of an unexpected exception (sysexits' EX_SOFTWARE): never a traceback unless --debug.
INTERNAL_ERROR = 70
cli = typer.Typer(
    name="slipway",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Build once, deploy the same way everywhere.",
)
cli.add_typer(migrations_app, name="migrations")
cli.add_typer(breakers_app, name="breakers")
cli.add_typer(users_app, name="users")
cli.add_typer(review_app, name="review")
cli.add_typer(app_cli, name="app")
cli.add_typer(router_app, name="router")
cli.command()(serve)


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
        str | None,
        typer.Option(
            "--as",
            help="Who is acting, for the audit log (overrides SLIPWAY_USER); refused when slipway.yml sets "
            "identity.require.",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            help="Talk to 'slipway serve' at this URL (overrides SLIPWAY_SERVER; token in SLIPWAY_TOKEN).",
        ),
    ] = None,
    project: Annotated[
        str | None, typer.Option("--project", help="The project on the server (default: this slipway.yml's).")
    ] = None,
) -> None:
    """Build once, deploy the same way everywhere."""
    ctx.obj = Options(
        config=config,
        database_url=database_url,
        artifact_dir=artifact_dir,
        actor=actor,
        debug=debug,
        server=server,
        project=project,
    )


@cli.command()
def version() -> None:
    """Print Slipway's version."""
    print(__version__)


@cli.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Where to write slipway.yml.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing slipway.yml.")] = False,
) -> None:
    """Look at the project (Python: Flask, Django, FastAPI; Node) and write a slipway.yml for it."""
    from rich.markup import escape

    from slipway.model.starter import summary
    from slipway.services.starter import init_project

    result = init_project(directory, force=force)
    out = console()
    out.print(f"detected: {escape(summary(result.detection))}")
    out.print(f"wrote {escape(str(result.config))}")
    if result.gitignore != "unchanged":
        how = "created .gitignore with" if result.gitignore == "created" else "added to .gitignore:"
        out.print(f"{how} .slipway/ (the state, artifacts and local deploy roots stay out of git)")
    for advice in result.advice:
        out.print(f"[yellow]check:[/] {escape(advice)}")
    out.print("next: slipway validate; git add slipway.yml .gitignore && git commit -m 'slipway'; slipway run")


@cli.command()
def validate(ctx: typer.Context) -> None:
    """Check slipway.yml (keys, references, every hook's template) without running anything."""
    from rich.markup import escape

    from slipway.services.validate import validate as check

    app = open_app(ctx)
    result = check(app)
    print(f"{result.path} (working tree) is valid: {result.summary}")
    if result.warning:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(result.warning)}")


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
    override_freeze: OverrideFreeze = None,
    json_out: JsonOut = False,
) -> None:
    """Run the pipeline for a commit: build once, test, deploy, gate, promote."""
    from slipway.services import pipeline

    older = (reason or "") if allow_older else None
    if not dry_run and (server := remote(ctx)):
        body = {"commit": commit, "allow_dirty": allow_dirty, "allow_older_reason": older}
        follow(server, server.call("POST", "/runs", body=_with_override(body, override_freeze)), json_out)
        return
    app = open_app(ctx, json_mode=json_out)
    if dry_run:
        from slipway.cli.render import plan_lines
        from slipway.services.plan import plan_run

        for line in plan_lines(plan_run(app, rev=commit, allow_dirty=allow_dirty)):
            print(line)
        return
    outcome = run_async(
        app,
        lambda: pipeline.start_run(
            app, rev=commit, allow_dirty=allow_dirty, allow_older=older, override_freeze=override_freeze
        ),
    )
    finish(app, outcome, json_out)


@cli.command()
def watch(
    ctx: typer.Context,
    interval: Annotated[
        float | None, typer.Option("--interval", min=1, help="Seconds between polls (default: triggers.poll_interval, else 60).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Poll once, drive what it starts, and exit.")] = False,
) -> None:
    """Poll the remote's trunk (git ls-remote) and run each new commit once; for teams without webhooks."""
    from slipway.services import triggers

    app = open_app(ctx)
    started = run_async(app, lambda: triggers.watch(app, interval=interval, once=once))
    if once and not started:
        console().print("no new commit on the trunk: nothing to run")


@cli.command(name="exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def exec_command(
    ctx: typer.Context,
    environment: Annotated[str, typer.Argument(help="The environment whose hosts run the command.")],
    role: Annotated[list[str] | None, typer.Option("--role", help="Only targets with this role (repeatable).")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="Seconds before each host's command is stopped.")] = None,
) -> None:
    """Run a command on every host of an environment, in parallel: slipway exec ENV [--role R] -- CMD."""
    from rich.markup import escape

    from slipway.services import fleet

    command = " ".join(ctx.args)
    app = open_app(ctx)
    outcomes = run_async(
        app, lambda: fleet.exec_everywhere(app, environment, command, roles=tuple(role or ()), timeout=timeout)
    )
    failed = [o for o in outcomes if not o.ok]
    for o in failed:
        why = o.error or f"exit code {o.exit_code}"
        console(stderr=True).print(f"[red]✗[/] {escape(o.host)}: {escape(why)}")
    if failed:
        console(stderr=True).print(f"{len(failed)} of {len(outcomes)} hosts failed")
        raise typer.Exit(1)
    console().print(f"ran on {len(outcomes)} host(s) of {escape(environment)}")


@cli.command()
def approve(
    ctx: typer.Context,
    run_id: WaitingRun,
    reason: Reason,
    allow_older: AllowOlder = False,
    override_freeze: OverrideFreeze = None,
    json_out: JsonOut = False,
) -> None:
    """Approve the gate a run waits at, and continue the run."""
    from slipway.services import pipeline

    if server := remote(ctx):
        body = _with_override({"reason": reason, "allow_older": allow_older}, override_freeze)
        follow(server, server.call("POST", f"/runs/{run_id}/approve", body=body), json_out)
        return
    app = open_app(ctx, json_mode=json_out)
    outcome = run_async(
        app,
        lambda: pipeline.approve(
            app, run_id, reason=reason, allow_older=allow_older, override_freeze=override_freeze
        ),
    )
    finish(app, outcome, json_out)


@cli.command()
def reject(
    ctx: typer.Context,
    run_id: WaitingRun,
    reason: Reason,
) -> None:
    """Reject the gate a run waits at (a parked canary: its hosts go back); the run ends as failed."""
    from slipway.services import pipeline

    if server := remote(ctx):
        run = server.call("POST", f"/runs/{run_id}/reject", body={"reason": reason})
        if run["state"] == "running":  # a parked canary: its hosts go back
            follow(server, run, json_out=False)
        print(f"run {run_id} rejected")
        return
    app = open_app(ctx)
    outcome = run_async(app, lambda: pipeline.reject(app, run_id, reason=reason))
    print(f"run {outcome.run_id} rejected")


@cli.command()
def promote(
    ctx: typer.Context,
    digest: Annotated[str, typer.Argument(metavar="ARTIFACT_DIGEST", help="sha256:... of a built artifact.")],
    to: Annotated[str, typer.Option("--to", help="The environment to deploy it to.")],
    allow_older: AllowOlder = False,
    reason: OlderReason = None,
    override_freeze: OverrideFreeze = None,
    json_out: JsonOut = False,
) -> None:
    """Deploy an artifact that already passed every stage before ENV, then ENV's stages after it. Never rebuilds."""
    from slipway.services import pipeline

    older = (reason or "") if allow_older else None
    if server := remote(ctx):
        body = {"digest": digest, "environment": to, "allow_older_reason": older}
        follow(server, server.call("POST", "/promotions", body=_with_override(body, override_freeze)), json_out)
        return
    app = open_app(ctx, json_mode=json_out)
    outcome = run_async(
        app,
        lambda: pipeline.promote(app, digest, environment=to, allow_older=older, override_freeze=override_freeze),
    )
    finish(app, outcome, json_out)


def _with_override(body: dict[str, Any], override_freeze: str | None) -> dict[str, Any]:
    """A POST body with ``override_freeze`` when one is given (an older server knows no such field)."""
    return {**body, "override_freeze": override_freeze} if override_freeze is not None else body


@cli.command()
def rollback(
    ctx: typer.Context,
    environment: Environment,
    to: Annotated[
        str | None, typer.Option("--to", metavar="RELEASE", help="Release id (default: the previous one).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in the audit log.")] = None,
    json_out: JsonOut = False,
) -> None:
    """Switch ENV back to an earlier release (no rebuild, no upload)."""
    from slipway.services import pipeline

    if server := remote(ctx):
        body = {"to_release": to, "reason": reason or ""}
        follow(server, server.call("POST", f"/environments/{environment}/rollback", body=body), json_out)
        return
    app = open_app(ctx, json_mode=json_out)
    outcome = run_async(app, lambda: pipeline.rollback(app, environment, to_release=to, reason=reason))
    finish(app, outcome, json_out)


@cli.command()
def status(ctx: typer.Context, json_out: JsonView = False) -> None:
    """Which release of which artifact runs on every environment and host."""
    from slipway.services import report

    if server := remote(ctx):
        data = server.call("GET", "/status")
    else:
        app = open_app(ctx, json_mode=json_out)
        try:
            data = report.status(app)
        finally:
            app.close()
    if json_out:
        _print_json(data)
        return
    from slipway.cli.render import queue_lines, status_table

    out = console()
    out.print(status_table(data))
    for line in queue_lines(data):
        out.print(line)
    for env in data["environments"]:
        if env.get("freeze"):  # an older server's status has no freeze key
            out.print(f"[yellow]{env['name']} is frozen[/] by {env['freeze']['name']} until {env['freeze']['until_text']}")
    if data["waiting_runs"]:
        out.print(f"waiting for approval: runs {', '.join(map(str, data['waiting_runs']))}")
    for review in data.get("reviews", ()):  # an older server's status has none
        out.print(f"review environment {review['name']} (merge request {review['number']}): {review['url'] or '-'}, "
                  f"release {review['release'] or '-'}, run {review['run_id'] or '-'}")


@cli.command()
def history(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
    json_out: JsonView = False,
) -> None:
    """Recent runs with their stages, artifacts and approvals."""
    from slipway.services import report

    if server := remote(ctx):
        data = server.call("GET", "/runs", limit=limit)["items"]
    else:
        app = open_app(ctx, json_mode=json_out)
        try:
            data = report.history(app, limit=limit)
        finally:
            app.close()
    if json_out:
        _print_json(data)
        return
    from slipway.cli.render import history_table

    console().print(history_table(data))


@cli.command()
def deployments(
    ctx: typer.Context,
    environment: Annotated[str | None, typer.Argument(metavar="[ENV]")] = None,
    limit: Annotated[int, typer.Option(help="How many deployments.")] = 20,
    json_out: JsonView = False,
) -> None:
    """Recent deployments: kind, release, outcome, duration, who, why."""
    from slipway.services import report

    if server := remote(ctx):
        data = server.call("GET", "/deployments", environment=environment, limit=limit)["items"]
    else:
        app = open_app(ctx, json_mode=json_out)
        try:
            data = report.deployments(app, environment, limit=limit)
        finally:
            app.close()
    if json_out:
        _print_json(data)
        return
    from slipway.cli.render import deployments_table

    console().print(deployments_table(data))


@cli.command()
def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    stage: Annotated[str | None, typer.Option("--stage", help="Only this stage.")] = None,
) -> None:
    """The stored output of every step of a run, with timings and exit codes."""
    from slipway.cli.render import print_logs

    if server := remote(ctx):
        steps = server.call("GET", f"/runs/{run_id}/logs", stage=stage)["steps"]
    else:
        from slipway.services.queries import run_logs
        from slipway.services.report import step_dict

        app = open_app(ctx)
        try:
            steps = [step_dict(s.stage, s.step) for s in run_logs(app, run_id, stage=stage).steps]
        finally:
            app.close()
    print_logs(console(), steps, stage)


@cli.command()
def unlock(
    ctx: typer.Context,
    environment: Environment,
    force: Annotated[
        bool, typer.Option("--force", help="Remove it even though its holder is alive (recorded in the audit log).")
    ] = False,
) -> None:
    """Remove an environment's deployment lock. A live holder's lock only with --force; both are audited."""
    from slipway.services import recovery

    if server := remote(ctx):
        removed = server.call("POST", f"/environments/{environment}/unlock", body={"force": force})["removed"]
    else:
        app = open_app(ctx)
        try:
            removed = recovery.unlock(app, environment, force=force)
        finally:
            app.close()
    print(f"lock on {environment} removed" if removed else f"{environment} was not locked")


@cli.command()
def resume(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN", help="An interrupted or cancelled run.")],
    json_out: JsonOut = False,
) -> None:
    """Continue an interrupted or cancelled run from its first stage that did not finish."""
    from slipway.services import pipeline

    if server := remote(ctx):
        follow(server, server.call("POST", f"/runs/{run_id}/resume"), json_out)
        return
    app = open_app(ctx, json_mode=json_out)
    outcome = run_async(app, lambda: pipeline.resume(app, run_id))
    finish(app, outcome, json_out)


def _print_json(data: object) -> None:
    import json

    print(json.dumps(data, indent=2))


def main(argv: list[str] | None = None) -> None:
    """Entry point: map errors to exit codes and one clear paragraph; tracebacks only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["version"]:  # answered before Typer parses: its parsers import pydantic to coerce options
        version()
        sys.exit(0)
    debug = "--debug" in args
    try:
        cli(args=args)  # usage errors are Typer's: message and exit code 2
    except SlipwayError as exc:
        _report(exc, debug=debug)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # a bug of Slipway's, not the user's mistake: still one paragraph, no traceback
        _report(exc, debug=debug)
        sys.exit(INTERNAL_ERROR)
    sys.exit(0)


def _report(exc: Exception, *, debug: bool) -> None:
    """One paragraph on stderr: the error and its hint, or for a bug, how to report it."""
    import traceback

    from rich.markup import escape

    if debug:
        traceback.print_exc()
    err = console(stderr=True)
    if isinstance(exc, SlipwayError):
        err.print(f"[red]error:[/] {escape(str(exc))}")
        if exc.hint:
            err.print(f"[dim]→ {escape(exc.hint)}[/]")
        return
    err.print(f"[red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}")
    err.print(
        "[dim]→ this is a bug in Slipway, not in your input; a run it was driving is recorded as failed. "
        "Run the command again with --debug and report the traceback[/]"
    )


if __name__ == "__main__":
    main()
