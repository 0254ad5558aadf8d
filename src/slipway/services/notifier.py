"""Delivering notifications without ever holding up a deployment.

Each delivery runs in a daemon thread of its own, so a receiver that hangs holds only its own thread:
every attempt is bounded by the receiver's ``timeout`` (connect, then each read or write), a delivery by
its ``attempts``, and the number of deliveries in flight by :data:`MAX_PENDING` (more are dropped, and
recorded as failed). A delivery that fails is recorded in the audit log (``notify.failed``, masked) and
said through the observer of the command that sent it; nothing is ever raised into a run. When a command
ends, :meth:`Notifier.drain` waits a bounded time (:data:`EXIT_WAIT`) for what is still in flight, then
gives up on it with a warning: the process never waits on a receiver beyond that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from slipway.model.notifications import EmailNotification, WebhookNotification
from slipway.model.triggers import StatusRequest

#: Seconds a command waits at its end for deliveries still in flight, all of them together.
EXIT_WAIT = 5.0
#: Deliveries in flight at once; beyond this, a new one is dropped (and recorded as failed).
MAX_PENDING = 64
#: Seconds before the second attempt of a delivery; doubled for each further one.
RETRY_DELAY = 0.5


class PermanentFailure(Exception):
    """The receiver refused the message in a way another attempt would not change (an HTTP 4xx)."""


@dataclass
class Delivery:
    """One message to one receiver, with the means to record its failure (already masking)."""

    receiver: WebhookNotification | EmailNotification | StatusRequest
    #: How the receiver is named in warnings and the audit log (never a secret URL).
    name: str
    #: The webhook's URL, or the SMTP password (resolved secrets; None when there is none).
    secret: str | None
    #: The webhook's JSON body, or the email.
    body: dict[str, Any] | EmailMessage
    #: Masks every secret of the project in a text.
    mask: Callable[[str], str]
    #: Called once, with the masked error, when the delivery failed or was given up.
    on_failure: Callable[[str], None]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: bool = False

    def attempt(self) -> None:
        """Send once; an exception when it did not arrive."""
        if isinstance(self.receiver, StatusRequest):
            _status(self.receiver)
        elif isinstance(self.receiver, WebhookNotification):
            _post(self.receiver, self.secret or "", self.body)
        else:
            assert isinstance(self.body, EmailMessage)
            _mail(self.receiver, self.secret, self.body)

    def deliver(self) -> None:
        """Every attempt, until one arrives; the failure recorded when none did."""
        error = ""
        for attempt in range(self.receiver.attempts):
            if attempt:
                time.sleep(RETRY_DELAY * 2 ** (attempt - 1))
            try:
                self.attempt()
                self.finish(None)
                return
            except PermanentFailure as exc:
                error = str(exc)
                break
            except Exception as exc:  # any failure of the receiver or of the way to it: try again
                error = f"{type(exc).__name__}: {exc}"
        self.finish(f"{error} (after {attempt + 1} attempt(s))")

    def finish(self, error: str | None) -> None:
        """Record how the delivery ended, once (a later outcome of one given up on is dropped)."""
        with self._lock:
            if self._done:
                return
            self._done = True
        if error is not None:
            with contextlib.suppress(Exception):  # recording the failure must never fail anything else
                self.on_failure(self.mask(error))


class Notifier:
    """The deliveries of one process (shared by a server's requests), each in a daemon thread."""

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._deliveries: dict[int, Delivery] = {}
        self._changed = threading.Condition()
        self._next = 0

    def submit(self, delivery: Delivery) -> None:
        """Start delivering; returns at once. Dropped (and recorded as failed) when too many are in flight."""
        with self._changed:
            if len(self._pending) >= MAX_PENDING:
                full = True
            else:
                full = False
                self._next += 1
                key = self._next
                self._pending.add(key)
                self._deliveries[key] = delivery
        if full:
            delivery.finish(f"dropped: {MAX_PENDING} deliveries are already in flight")
            return
        threading.Thread(target=self._deliver, args=(key, delivery), name=f"notify-{key}", daemon=True).start()

    def _deliver(self, key: int, delivery: Delivery) -> None:
        try:
            delivery.deliver()
        finally:
            with self._changed:
                self._pending.discard(key)
                self._deliveries.pop(key, None)
                self._changed.notify_all()

    def drain(self, timeout: float = EXIT_WAIT) -> int:
        """Wait up to ``timeout`` seconds for the deliveries in flight; give up on the rest (each recorded
        as failed). Returns how many were given up on."""
        with self._changed:
            self._changed.wait_for(lambda: not self._pending, timeout=timeout)
            left = list(self._deliveries.values())
        for delivery in left:
            delivery.finish(f"gave up: no answer within the {timeout:g} s this command waits for notifications")
        return len(left)


def _post(receiver: WebhookNotification, url: str, body: dict[str, Any] | EmailMessage) -> None:
    import httpx  # imported when a webhook is sent: commands that send none do not pay for it

    timeout = httpx.Timeout(receiver.timeout)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        response = client.post(url, json=body, headers={"User-Agent": "slipway"})
    _check_answer(response)


def _check_answer(response: Any) -> None:
    """PermanentFailure for an HTTP 4xx another attempt would not change; RuntimeError for other failures."""
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise PermanentFailure(f"HTTP {response.status_code}: {response.text[:200]}")
    if response.status_code >= 300:
        raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")


def _status(request: StatusRequest) -> None:
    import httpx

    with httpx.Client(timeout=httpx.Timeout(request.timeout), follow_redirects=False) as client:
        response = client.post(request.url, json=request.body, headers=request.headers)
    _check_answer(response)


def _mail(receiver: EmailNotification, password: str | None, message: EmailMessage) -> None:
    import smtplib
    import ssl

    smtp = receiver.smtp
    with smtplib.SMTP(smtp.host, smtp.port, timeout=receiver.timeout) as client:
        if smtp.starttls:
            client.starttls(context=ssl.create_default_context())
        if smtp.username is not None and password is not None:
            try:
                client.login(smtp.username, password)
            except smtplib.SMTPAuthenticationError as exc:
                raise PermanentFailure(f"SMTP login as {smtp.username} refused: {exc.smtp_code}") from None
        client.send_message(message)
