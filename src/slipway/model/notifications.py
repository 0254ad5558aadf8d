"""The ``notifications:`` of slipway.yml: who is told when something happens (docs/config.md, "notifications").

A notification is a webhook (a generic JSON body or a Slack-compatible one) or an email sent through SMTP.
Whatever carries a credential (a webhook URL with a token in it, an SMTP password) can be a secret
reference, resolved when a message is sent and masked in everything Slipway records or prints.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from slipway.model.base import Frozen, SecretRef


class NotifyEvent(StrEnum):
    """What a notification can be sent for."""

    #: A run parks at an approval gate, or a canary waits for a person's decision.
    APPROVAL_NEEDED = "approval_needed"
    DEPLOYMENT_SUCCEEDED = "deployment_succeeded"
    DEPLOYMENT_FAILED = "deployment_failed"
    #: A rollback's deployment finished (succeeded or failed).
    ROLLBACK = "rollback"
    #: The circuit breaker of an environment's dependency opened.
    BREAKER_OPEN = "breaker_open"


ALL_EVENTS = tuple(NotifyEvent)
#: Seconds each attempt of a delivery may take to connect, and then to answer, by default.
DEFAULT_TIMEOUT = 5.0


class _Receiver(Frozen):
    """What every receiver has: the events it wants, the environments it cares about, its timeouts."""

    #: Events sent to this receiver (default: all of them).
    events: tuple[NotifyEvent, ...] = ALL_EVENTS
    #: Only events of these environments (default: every environment).
    environments: tuple[str, ...] = ()
    #: Seconds one attempt may wait to connect, and then for each answer; never the run's time.
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=300)
    #: Attempts of one delivery before it is recorded as failed (``notify.failed`` in the audit log).
    attempts: int = Field(default=3, ge=1, le=10)
    #: Base URL of ``slipway serve`` as people reach it: messages link to the run's page there.
    server_url: str | None = None

    @field_validator("events", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def wants(self, event: NotifyEvent, environment: str | None) -> bool:
        """Whether this receiver is sent ``event`` of ``environment`` (None: an event of no environment)."""
        if event not in self.events:
            return False
        return not self.environments or environment is None or environment in self.environments


class WebhookNotification(_Receiver):
    """An HTTP POST of a JSON body to a URL."""

    kind: Literal["webhook"] = "webhook"
    #: The receiver's URL; a secret reference when the URL carries a token (Slack's do).
    url: str | SecretRef
    #: ``json``: Slipway's own body (docs/config.md); ``slack``: a Slack-compatible ``text`` and ``blocks``.
    format: Literal["json", "slack"] = "json"

    @field_validator("url")
    @classmethod
    def _http(cls, value: str | SecretRef) -> str | SecretRef:
        if isinstance(value, str) and not value.startswith(("http://", "https://")):
            raise ValueError(f"a webhook url starts with http:// or https://, not {value[:20]!r}")
        return value

    def describe(self) -> str:
        """The receiver, for messages and the audit log: never a secret URL."""
        return f"webhook {self.url.describe() if isinstance(self.url, SecretRef) else _without_query(self.url)}"


class SMTPServer(Frozen):
    """The mail server an email notification is sent through."""

    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    #: Upgrade the connection with STARTTLS before logging in (the certificate is verified).
    starttls: bool = False
    username: str | None = None
    password: SecretRef | None = None

    @model_validator(mode="after")
    def _login(self) -> SMTPServer:
        if (self.username is None) != (self.password is None):
            raise ValueError("an SMTP login needs both username and password (password: {env: VAR})")
        return self


class EmailNotification(_Receiver):
    """An email through an SMTP server."""

    kind: Literal["email"] = "email"
    to: tuple[str, ...] = Field(min_length=1)
    #: The sender address (``From:``).
    from_: str = Field(alias="from", min_length=3)
    smtp: SMTPServer

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many_to(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    def describe(self) -> str:
        """The receiver, for messages and the audit log."""
        return f"email to {', '.join(self.to)} via {self.smtp.host}:{self.smtp.port}"


Notification = Annotated[WebhookNotification | EmailNotification, Field(discriminator="kind")]


def _without_query(url: str) -> str:
    """A URL without its query string and fragment (where tokens usually are)."""
    return url.split("?", 1)[0].split("#", 1)[0]
