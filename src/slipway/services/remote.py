"""The services over HTTP, for the CLI talking to a server (``--server URL`` or SLIPWAY_SERVER, with SLIPWAY_TOKEN): the same
commands, the same output, the same exit codes, because the server answers with what the services return
and streams the same progress events the CLI's own observer prints.

Only the commands that read or change what runs where go to the server (status, history, deployments,
logs, run, approve, reject, promote, rollback, resume, unlock); validate, init, migrations, users and
serve work on the local files and store as always.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from slipway.engine.events import Observer
from slipway.errors import ConfigError, SlipwayError, StoreError
from slipway.model.states import State

ENV_SERVER = "SLIPWAY_SERVER"
ENV_TOKEN = "SLIPWAY_TOKEN"
ENV_PROJECT = "SLIPWAY_PROJECT"


class RemoteError(SlipwayError):
    """An error the server answered with: its message, hint and the exit code the CLI exits with."""

    def __init__(self, message: str, *, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


def raise_error(error: dict[str, Any]) -> None:
    """Raise what the server said went wrong (the error body of api/errors.py, or a run's end)."""
    raise RemoteError(
        error.get("message") or "the server refused",
        hint=error.get("hint") or "",
        exit_code=int(error.get("exit_code") or 1),
    )


@dataclass
class Remote:
    """A server, a token, and the project the commands address there."""

    url: str
    token: str
    project: str

    def _client(self, timeout: float | None = 60.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url.rstrip("/"), headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout
        )

    def call(self, method: str, path: str, *, body: dict[str, Any] | None = None, **params: Any) -> Any:
        """One request to ``/api/projects/PROJECT{path}``; the JSON answer, or the server's error raised."""
        query = {k: v for k, v in params.items() if v is not None}
        try:
            with self._client() as c:
                response = c.request(method, f"/api/projects/{self.project}{path}", json=body, params=query)
        except httpx.HTTPError as exc:
            raise StoreError(
                f"the server at {self.url} does not answer: {exc}",
                hint=f"check that 'slipway serve' runs there, or unset {ENV_SERVER} to use the local store",
            ) from exc
        return self._answer(response)

    def _answer(self, response: httpx.Response) -> Any:
        try:
            data = response.json()
        except json.JSONDecodeError:
            raise RemoteError(
                f"the server answered {response.status_code} without JSON", hint=f"is {self.url} a Slipway server?"
            ) from None
        if response.is_error:
            raise_error(data.get("error", {}) if isinstance(data, dict) else {})
        return data

    def events(self, run_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The run's server-sent events until it ends or waits."""
        try:
            with (
                self._client(timeout=None) as c,
                c.stream("GET", f"/api/projects/{self.project}/runs/{run_id}/events") as stream,
            ):
                if stream.is_error:
                    stream.read()
                    self._answer(stream)
                event = "message"
                for line in stream.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        yield event, json.loads(line[6:])
        except httpx.HTTPError as exc:
            raise StoreError(
                f"lost the server at {self.url} while following run {run_id}: {exc}",
                hint="'slipway history' shows how it went",
            ) from exc

    def follow(self, run_id: int, observer: Observer) -> dict[str, Any]:
        """Print the run's progress as it happens (through the CLI's own observer); the run once it ends
        or waits. The error the run ended with is raised as the CLI would have raised it."""
        failure: dict[str, Any] | None = None
        for event, data in self.events(run_id):
            if event == "finished":
                failure = data.get("error")
            else:
                replay(observer, event, data)
        run: dict[str, Any] = self.call("GET", f"/runs/{run_id}")
        if failure is not None:
            raise_error(failure)
        return run


def replay(observer: Observer, event: str, d: dict[str, Any]) -> None:
    """Hand a feed event (services/hub.py LiveFeed) to ``observer`` as the engine would have."""
    if event == "stage_started":
        observer.stage_started(d["stage"], d["stage_kind"])
    elif event == "stage_finished":
        observer.stage_finished(d["stage"], State(d["state"]), d["duration"], d["error"])
    elif event == "step_started":
        observer.step_started(d["host"], d["label"])
    elif event == "output":
        observer.output(d["host"], d["stream"], d["line"])
    elif event == "step_finished":
        observer.step_finished(d["host"], d["label"], State(d["state"]), d["exit_code"], d["duration"])
    elif event == "batch_started":
        observer.batch_started(d["index"], d["total"], d["batch_kind"], d["hosts"])
    elif event == "batch_finished":
        observer.batch_finished(d["index"], d["total"], d["failed"], d["duration"])
    elif event == "message":
        observer.message(d["text"])


def connect(url: str, environ: dict[str, str], *, project: str | None, local_project: str | None) -> Remote:
    """The Remote for ``url``: the token from SLIPWAY_TOKEN, the project from --project, SLIPWAY_PROJECT,
    the local slipway.yml, or the server's only project."""
    token = environ.get(ENV_TOKEN, "").strip()
    if not token:
        raise ConfigError(
            f"talking to the server at {url} needs an API token in {ENV_TOKEN}",
            hint="an admin makes one with 'slipway users token NAME' where the server runs",
        )
    name = project or environ.get(ENV_PROJECT) or local_project
    remote = Remote(url, token, name or "")
    if not name:
        with remote._client() as c:
            served = remote._answer(c.get("/api/projects"))
        if len(served) != 1:
            raise ConfigError(
                f"the server at {url} serves {len(served)} projects: {', '.join(p['name'] for p in served)}",
                hint=f"name one with --project or {ENV_PROJECT}",
            )
        remote.project = served[0]["name"]
    return remote
