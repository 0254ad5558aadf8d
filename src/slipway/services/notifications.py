"""Telling people what happened: the ``notifications:`` of slipway.yml (docs/config.md, "notifications").

The services call these where things happen: :func:`approval_needed` when a run parks at a gate,
:func:`deployment_outcome` around every deployment (its success, failure or rollback, and a canary that
waits for a decision), :func:`watch_breakers` around the store of the circuit breakers (one opening).
Each builds one message, masks every secret of the project in it and hands it to the App's
:class:`~slipway.services.notifier.Notifier`, which delivers it in the background: nothing here waits on a
receiver, and nothing here raises into a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from slipway.checks.breaker import BreakerRepository, BreakerState, BreakerStatus
from slipway.config import LoadedConfig
from slipway.engine.masking import Masker
from slipway.engine.pause import DeploymentParked
from slipway.errors import SecretError
from slipway.model.base import SecretRef
from slipway.model.notifications import EmailNotification, NotifyEvent, WebhookNotification
from slipway.model.states import DeploymentKind
from slipway.services.app import App
from slipway.services.notifier import Delivery
from slipway.services.releases import DeployRequest
from slipway.services.secrets import resolve_ref

#: The lines of an error a message carries (the rest is in 'slipway logs').
ERROR_LINES = 12


@dataclass(frozen=True)
class Message:
    """What happened, in the words every format is made of."""

    event: NotifyEvent
    project: str
    summary: str
    environment: str | None = None
    run: int | None = None
    release: str | None = None
    commit: str | None = None
    by: str | None = None
    outcome: str | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)

    def masked(self, mask: Callable[[str], str]) -> Message:
        """This message with every secret in its texts masked."""
        texts: dict[str, Any] = {f.name: mask(v) for f in fields(self) if type(v := getattr(self, f.name)) is str}
        return replace(self, **texts)

    def link(self, server_url: str | None) -> str | None:
        """The run's page on ``slipway serve`` at ``server_url``, if there is a run and a server."""
        if not server_url or self.run is None:
            return None
        return f"{server_url.rstrip('/')}/projects/{self.project}/runs/{self.run}"


def notify(app: App, loaded: LoadedConfig, message: Message) -> None:
    """Send ``message`` to every receiver that wants it, in the background; never raises."""
    try:
        receivers = [r for r in loaded.project.notifications if r.wants(message.event, message.environment)]
        if not receivers:
            return
        mask = project_masker(app, loaded)
        message = message.masked(mask)
        for receiver in receivers:
            _send(app, loaded, receiver, message, mask)
    except Exception as exc:  # a notification never fails what it tells about
        app.observer.message(f"warning: notification {message.event.value} not sent: {type(exc).__name__}: {exc}")


def _send(
    app: App,
    loaded: LoadedConfig,
    receiver: WebhookNotification | EmailNotification,
    message: Message,
    mask: Callable[[str], str],
) -> None:
    name = receiver.describe()
    on_failure = _recorder(app, name, message)
    try:
        secret = _receiver_secret(receiver, loaded, app)
    except SecretError as exc:
        on_failure(mask(f"{exc.message} ({exc.key_path})"))
        return
    link = message.link(receiver.server_url)
    if isinstance(receiver, WebhookNotification):
        body: dict[str, Any] | EmailMessage = (
            slack_body(message, link) if receiver.format == "slack" else json_body(message, link)
        )
    else:
        body = email(message, link, sender=receiver.from_, to=receiver.to)
    app.notifier.submit(Delivery(receiver, name, secret, body, mask, on_failure))


def _recorder(app: App, name: str, message: Message) -> Callable[[str], None]:
    """What a failed delivery does: a warning through the observer, ``notify.failed`` in the audit log."""
    store, observer, actor = app.store, app.observer, app.settings.actor

    def failed(error: str) -> None:
        observer.message(f"warning: notification {message.event.value} to {name} failed: {error}")
        detail = {"event": message.event.value, "run": message.run, "environment": message.environment, "error": error}
        store.audit(actor, "notify.failed", name, detail)

    return failed


def _receiver_secret(receiver: WebhookNotification | EmailNotification, loaded: LoadedConfig, app: App) -> str | None:
    """The webhook's URL or the SMTP password, resolved now (SecretError when it cannot be)."""
    index = loaded.project.notifications.index(receiver)
    if isinstance(receiver, WebhookNotification):
        if isinstance(receiver.url, str):
            return receiver.url
        ref, where = receiver.url, f"notifications[{index}].url"
    elif receiver.smtp.password is not None:
        ref, where = receiver.smtp.password, f"notifications[{index}].smtp.password"
    else:
        return None
    return resolve_ref(ref, name=where, where=where, root=loaded.root, environ=app.environ)


def project_masker(app: App, loaded: LoadedConfig) -> Callable[[str], str]:
    """Masks what the App's masker masks and every secret of the project this process can resolve: those of
    every environment, the receivers' own, the image registry's login."""
    project = loaded.project
    refs: list[SecretRef] = [ref for env in project.environments.values() for ref in env.secrets.values()]
    for receiver in project.notifications:
        if isinstance(receiver, WebhookNotification) and isinstance(receiver.url, SecretRef):
            refs.append(receiver.url)
        if isinstance(receiver, EmailNotification) and receiver.smtp.password is not None:
            refs.append(receiver.smtp.password)
    registry = getattr(project.artifact, "registry", None)
    refs.extend(
        r
        for r in (getattr(registry, "username", None), getattr(registry, "password", None))
        if isinstance(r, SecretRef)
    )
    values = []
    for ref in refs:
        try:
            values.append(resolve_ref(ref, name="secret", where="", root=loaded.root, environ=app.environ))
        except SecretError:
            continue  # one this process cannot read cannot be in what it says either
    extra = Masker(values)
    return lambda text: extra(app.masker(text))


# --- the formats -----------------------------------------------------------------------------------


def json_body(message: Message, link: str | None) -> dict[str, Any]:
    """Slipway's own JSON body: every field that has a value (docs/config.md, "notifications")."""
    body: dict[str, Any] = {"event": message.event.value, "project": message.project, "text": message.summary}
    for key in ("environment", "run", "release", "commit", "by", "outcome", "error"):
        value = getattr(message, key)
        if value is not None:
            body[key] = value
    if link:
        body["url"] = link
    body["at"] = _iso(message.at)
    return body


def slack_body(message: Message, link: str | None) -> dict[str, Any]:
    """A body Slack's incoming webhooks (and Mattermost's, Rocket.Chat's) take: ``text`` and ``blocks``."""
    facts = [f"*{key}:* {value}" for key, value in _facts(message)]
    text = message.summary + (f" <{link}|run {message.run}>" if link else "")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if facts:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]})
    if message.error:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{message.error}```"}})
    return {"text": text, "blocks": blocks}


def email(message: Message, link: str | None, *, sender: str, to: tuple[str, ...]) -> EmailMessage:
    """A plain-text email: the summary as its subject, then every fact, the error and the link."""
    mail = EmailMessage()
    mail["Subject"] = f"[slipway] {message.summary}".splitlines()[0][:200]
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    lines = [message.summary, "", *(f"{key}: {value}" for key, value in _facts(message))]
    if message.error:
        lines += ["", message.error]
    if link:
        lines += ["", link]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def _facts(message: Message) -> list[tuple[str, str]]:
    pairs = [
        ("event", message.event.value),
        ("project", message.project),
        ("environment", message.environment),
        ("run", None if message.run is None else str(message.run)),
        ("release", message.release),
        ("commit", message.commit[:12] if message.commit else None),
        ("by", message.by),
        ("outcome", message.outcome),
        ("at", _iso(message.at)),
    ]
    return [(k, v) for k, v in pairs if v is not None]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


# --- where things happen ---------------------------------------------------------------------------


def approval_needed(
    app: App,
    loaded: LoadedConfig,
    *,
    run: int | None,
    gate: str,
    commit: str | None,
    environment: str | None,
    why: str = "",
) -> None:
    """A run parks at ``gate`` until a person decides (``environment``: the one it gates, if any)."""
    where = f" before {environment}" if environment else ""
    summary = f"{loaded.project.name}: run {run} waits for approval at {gate}{where}" + (f" ({why})" if why else "")
    notify(
        app,
        loaded,
        Message(
            NotifyEvent.APPROVAL_NEEDED,
            loaded.project.name,
            summary,
            environment=environment,
            run=run,
            commit=commit,
            by=app.settings.actor,
            outcome="waiting",
        ),
    )


@contextmanager
def deployment_outcome(app: App, loaded: LoadedConfig, request: DeployRequest) -> Iterator[list[str]]:
    """Around one deployment: notify how it ended. The body appends the release id it deployed to the list."""
    released: list[str] = []
    rollback = request.kind is DeploymentKind.ROLLBACK
    try:
        yield released
    except DeploymentParked as parked:  # a canary waits for a decision: the deploy stage is its gate
        approval_needed(
            app,
            loaded,
            run=request.run_id,
            gate="its canary",
            commit=request.commit,
            environment=request.environment,
            why=f"canary hosts: {', '.join(parked.hosts)}",
        )
        raise
    except Exception as exc:
        _deployment_ended(app, loaded, request, None, error=str(exc) or type(exc).__name__, rollback=rollback)
        raise
    _deployment_ended(
        app, loaded, request, released[0] if released else request.release_id, error=None, rollback=rollback
    )


def _deployment_ended(
    app: App, loaded: LoadedConfig, request: DeployRequest, release: str | None, *, error: str | None, rollback: bool
) -> None:
    project, env = loaded.project.name, request.environment
    if rollback:
        event = NotifyEvent.ROLLBACK
        summary = (
            f"{project}: {env} rolled back to release {release}"
            if error is None
            else f"{project}: rollback of {env} failed"
        )
    else:
        event = NotifyEvent.DEPLOYMENT_FAILED if error else NotifyEvent.DEPLOYMENT_SUCCEEDED
        summary = f"{project}: deployment to {env} " + ("failed" if error else f"succeeded (release {release})")
    if request.run_id is not None:
        summary += f", run {request.run_id}"
    notify(
        app,
        loaded,
        Message(
            event,
            project,
            summary,
            environment=env,
            run=request.run_id,
            release=release,
            commit=request.commit,
            by=app.settings.actor,
            outcome="failed" if error else "succeeded",
            error="\n".join(error.splitlines()[:ERROR_LINES]) if error else None,
        ),
    )


class NotifyingBreakers:
    """A breaker store that notifies when a breaker it saves has just opened (a BreakerRepository)."""

    def __init__(self, inner: BreakerRepository, on_open: Callable[[str, BreakerState], None]) -> None:
        self._inner = inner
        self._on_open = on_open

    def load(self, name: str) -> BreakerState | None:
        """The stored state."""
        return self._inner.load(name)

    def save(self, name: str, state: BreakerState, *, expected_version: int) -> bool:
        """Save; a saved open state is a trip (an open breaker is only ever saved when it opens)."""
        saved = self._inner.save(name, state, expected_version=expected_version)
        if saved and state.status is BreakerStatus.OPEN:
            self._on_open(name, state)
        return saved


def watch_breakers(app: App, loaded: LoadedConfig, environment: str, inner: BreakerRepository) -> BreakerRepository:
    """``inner``, notifying ``breaker_open`` for each breaker of ``environment``'s dependencies that opens."""
    project = loaded.project.name

    def opened(name: str, state: BreakerState) -> None:
        notify(
            app,
            loaded,
            Message(
                NotifyEvent.BREAKER_OPEN,
                project,
                f"{project}: circuit breaker {name} opened",
                environment=environment,
                by=app.settings.actor,
                outcome="open",
                error=state.reason or None,
            ),
        )

    return NotifyingBreakers(inner, opened)
