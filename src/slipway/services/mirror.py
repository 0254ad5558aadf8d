"""The project's repository as the mirror the server keeps: what is fetched into it, and with which
credentials (a deploy key or a token from ``triggers:``, never on a command line, always masked)."""

from __future__ import annotations

import base64
import fcntl
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slipway.model.triggers import Forge, TriggerSpec
from slipway.private import make_private_dir
from slipway.services.app import App
from slipway.services.secrets import resolve_ref

#: Where fetched branch heads are kept in the project's repository (the checkout's own refs are not moved).
TRUNK_REFS = "refs/slipway/heads/"


def secret(app: App, ref_name: str, triggers: TriggerSpec) -> str:
    """The value of ``triggers.<ref_name>`` (a secret reference), learnt by the App's masker."""
    ref = getattr(triggers, ref_name)
    value = resolve_ref(ref, name=f"triggers.{ref_name}", where=f"triggers.{ref_name}", root=app.root, environ=app.environ)
    app.masker.add([value])
    return value


@contextmanager
def git_credentials(app: App, triggers: TriggerSpec) -> Iterator[dict[str, str]]:
    """The environment git needs to fetch with the configured deploy key or token (nothing else: the
    user's own SSH setup). The key lives in a private temporary file for the fetch only; the token is
    passed in the environment, never on a command line, and masked."""
    env: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="slipway-git-") as tmp:
        ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if triggers.known_hosts:
            ssh += ["-o", f"UserKnownHostsFile={Path(triggers.known_hosts).expanduser()}"]
        if triggers.ssh_key is not None:
            key = make_private_dir(Path(tmp) / "key") / "id"
            key.write_text(secret(app, "ssh_key", triggers).rstrip("\n") + "\n")
            key.chmod(0o600)
            ssh += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
        if triggers.ssh_key is not None or triggers.known_hosts:
            env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        if triggers.token is not None:
            token = secret(app, "token", triggers)
            kind = triggers.forge.kind if triggers.forge else None
            user = {Forge.GITHUB: "x-access-token", Forge.GITLAB: "oauth2"}.get(kind, "slipway")  # type: ignore[arg-type]
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            app.masker.add([basic])
            env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}
        yield env


@contextmanager
def fetching(app: App) -> Iterator[None]:
    """Hold the project's fetch lock: one ``git fetch`` into its repository at a time, across threads and
    processes (a server's concurrent deliveries, its poller, ``slipway watch``), so that no fetch fails on
    a ref another one is updating."""
    path = make_private_dir(app.settings.state_dir) / "fetch.lock"
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
