"""``slipway review list|up|down|expire``: merge-request runs and review environments (docs/triggers.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from slipway.cli.common import JsonOut, JsonView, console, listed, open_app, print_outcome, run_async

review_app = typer.Typer(
    help="Merge requests: build and test the merge result, deploy it to a review environment, tear it down.",
    no_args_is_help=True,
)
Number = Annotated[int, typer.Argument(metavar="N", help="The merge request's number.", min=1)]


@review_app.command("list")
def list_reviews(ctx: typer.Context, json_out: JsonView = False) -> None:
    """Every review environment, open and closed: request, URL, commits, when opened, updated, closed and why."""
    from slipway.services import review

    rows = listed(ctx, json_out, review.list_reviews,
                  empty="no review environments yet: 'slipway review up N --head SHA --target REF' opens one")
    if rows is not None:
        console().print(_table(rows))


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from slipway.cli.render import ago

    table = Table(box=None, header_style="bold")
    for col in ("request", "environment", "state", "url", "head", "merge", "run", "updated", "closed"):
        table.add_column(col)
    for r in rows:
        closed = f"{ago(r['closed_at'])} by {r['closed_by']}: {r['close_reason']}" if r["closed_at"] else "-"
        table.add_row(
            str(r["number"]), r["environment"], f"[{'green' if r['state'] == 'open' else 'dim'}]{r['state']}[/]",
            escape(r["url"] or "-"), r["head_commit"][:12], r["merge_commit"][:12], str(r["run_id"] or "-"),
            ago(r["updated_at"]), escape(closed),
        )
    return table


@review_app.command("up")
def up(
    ctx: typer.Context,
    number: Number,
    head: Annotated[str, typer.Option("--head", help="The request's head commit (in this repository).")],
    target: Annotated[str, typer.Option("--target", help="The branch it merges into: a ref or commit, e.g. origin/main.")],
    branch: Annotated[str, typer.Option("--branch", help="The request's branch name ({{ review.branch }}).")] = "",
    json_out: JsonOut = False,
) -> None:
    """Build and test the merge result of request N and deploy it to its review environment (what a webhook does)."""
    from slipway.services import review
    from slipway.services.queries import get_run
    from slipway.services.report import run_dict

    app = open_app(ctx, json_mode=json_out)
    result = run_async(app, lambda: review.up(app, number=number, head=head, target=target, branch=branch))
    try:
        run = get_run(app, result.outcome.run_id)
    finally:
        app.close()
    url = result.review.url if result.review is not None else None
    print_outcome({**run_dict(run), "state": result.outcome.state.value, "review_url": url}, json_out)
    if url and not json_out:
        print(f"{result.review.environment if result.review else ''}: {url}")


@review_app.command("down")
def down(
    ctx: typer.Context,
    number: Number,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (merged, closed ...); kept in the audit log.")],
) -> None:
    """Tear down request N's review environment: teardown commands, deploy roots, SQLite database; records kept."""
    from slipway.services import review

    app = open_app(ctx)
    result = run_async(app, lambda: review.close(app, number, reason=reason))
    if not result.complete:
        raise typer.Exit(1)


@review_app.command("expire")
def expire(ctx: typer.Context) -> None:
    """Tear down the open review environments not updated for longer than the template's ttl."""
    from slipway.services import review

    app = open_app(ctx)
    done = run_async(app, lambda: review.expire(app))
    if not done:
        print("no review environment has outlived its ttl")
    if any(not t.complete for t in done):
        raise typer.Exit(1)
