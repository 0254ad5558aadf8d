"""``slipway serve`` and ``slipway users ...`` (accounts of the server, kept in the project's state store)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from slipway.cli.common import JsonView, console, open_app, options

users_app = typer.Typer(help="Accounts of 'slipway serve': users, roles per environment, API tokens (docs/server.md).")
Name = Annotated[str, typer.Argument(metavar="NAME", help="The user name.")]
Env = Annotated[str, typer.Option("--env", "-e", help="The environments the role covers: a name or a glob; * is all.")]
PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (no prompt).")
]


def serve(
    ctx: typer.Context,
    projects: Annotated[
        list[Path] | None,
        typer.Argument(metavar="[PROJECT]...", help="Project directories (or slipway.yml files); default: this one."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (default loopback only; see docs/server.md).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8470,
    open_metrics: Annotated[
        bool, typer.Option("--open-metrics", help="Serve /metrics without a token (for a scraper on a private network).")
    ] = False,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies whose X-Forwarded-For/-Proto headers are trusted (comma-separated).")
    ] = "127.0.0.1",
) -> None:
    """Serve the HTTP API, the web UI and /metrics; runs started there are driven by this process."""
    try:
        import uvicorn

        from slipway.server import create_app
    except ImportError as exc:
        from slipway.errors import ConfigError

        raise ConfigError(
            f"'slipway serve' needs the server extra ({exc.name} is not installed)",
            hint="pip install 'slipway-deploy[server]'",
        ) from exc
    from slipway.services.hub import Hub

    o = options(ctx)
    hub = Hub.open(
        projects or [o.config or Path.cwd()], database_url=o.database_url, artifact_dir=o.artifact_dir
    )
    if not hub.accounts.store.users():
        console(stderr=True).print(
            "[yellow]no user can sign in yet[/]: slipway users add NAME --role admin (in this project's directory)"
        )
    console(stderr=True).print(f"serving {', '.join(sorted(hub.projects))} on http://{host}:{port}/")
    uvicorn.run(
        create_app(hub, open_metrics=open_metrics),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        log_level="info",
        timeout_graceful_shutdown=150,
    )


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    first = typer.prompt("password", hide_input=True)
    if typer.prompt("again", hide_input=True) != first:
        from slipway.errors import ConfigError

        raise ConfigError("the two passwords differ", hint="type the same password twice")
    return str(first)


def _roles(values: list[str]) -> tuple[tuple[str, str], ...]:
    return tuple((v.split(":", 1)[0], v.split(":", 1)[1] if ":" in v else "*") for v in values)


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: Name,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="ROLE or ROLE:ENVIRONMENTS (viewer, deployer, approver, admin); repeatable."),
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user with a password (argon2-hashed) and roles."""
    from slipway.services import accounts

    app = open_app(ctx)
    try:
        accounts.add_user(app.store, name, _password(password_stdin), roles=_roles(role or []), actor=app.settings.actor)
    finally:
        app.close()
    print(f"user {name} added")


@users_app.command("list")
def list_users(ctx: typer.Context, json_out: JsonView = False) -> None:
    """Every user with its roles."""
    app = open_app(ctx)
    try:
        users = app.store.users()
    finally:
        app.close()
    rows: list[dict[str, Any]] = [
        {"name": u.name, "disabled": u.disabled, "roles": [f"{r}:{e}" for r, e in u.grants]} for u in users
    ]
    if json_out:
        import json

        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['name']}{' (disabled)' if row['disabled'] else ''}: {', '.join(row['roles']) or 'no roles'}")


@users_app.command("grant")
def grant(ctx: typer.Context, name: Name, role: str, env: Env = "*") -> None:
    """Give a user a role on the environments matching --env."""
    from slipway.services import accounts

    app = open_app(ctx)
    try:
        accounts.require_user(app.store, name)
        app.store.grant(name, accounts.check_role(role).value, env, actor=app.settings.actor)
    finally:
        app.close()
    print(f"{name} is {role} on {env}")


@users_app.command("revoke")
def revoke(ctx: typer.Context, name: Name, role: str, env: Env = "*") -> None:
    """Take a role away (on exactly the --env pattern it was granted on)."""
    app = open_app(ctx)
    try:
        gone = app.store.revoke(name, role, env, actor=app.settings.actor)
    finally:
        app.close()
    print(f"{name} is no longer {role} on {env}" if gone else f"{name} was not {role} on {env}")


@users_app.command("passwd")
def passwd(ctx: typer.Context, name: Name, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password (its browsers are signed out)."""
    from slipway.services import accounts

    app = open_app(ctx)
    try:
        accounts.set_password(app.store, name, _password(password_stdin), actor=app.settings.actor)
    finally:
        app.close()
    print(f"password of {name} changed")


@users_app.command("disable")
def disable(ctx: typer.Context, name: Name, enable: Annotated[bool, typer.Option("--enable")] = False) -> None:
    """Stop a user from signing in or using tokens (--enable: allow again)."""
    from slipway.services import accounts

    app = open_app(ctx)
    try:
        accounts.require_user(app.store, name)
        app.store.set_user_disabled(name, not enable, actor=app.settings.actor)
    finally:
        app.close()
    print(f"{name} {'enabled' if enable else 'disabled'}")


@users_app.command("token")
def token(ctx: typer.Context, name: Name, label: Annotated[str, typer.Option(help="What it is for.")] = "cli") -> None:
    """Make an API token for a user; printed once, only its hash is kept."""
    from slipway.services import accounts

    app = open_app(ctx)
    try:
        value = accounts.create_token(app.store, name, label, actor=app.settings.actor)
    finally:
        app.close()
    print(value)
    console(stderr=True).print("[dim]→ shown once; use it as SLIPWAY_TOKEN or 'Authorization: Bearer ...'[/]")
