"""slipway.yml's ``notifications``, the three formats, and the Notifier's bounds: a delivery to a receiver
that never answers is given up on within the wait, and recorded, never waited for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.config import parse_config
from slipway.errors import ConfigError
from slipway.model.notifications import ALL_EVENTS, EmailNotification, NotifyEvent, WebhookNotification
from slipway.services.notifications import Message, email, json_body, slack_body
from slipway.services.notifier import Delivery, Notifier

pytestmark = pytest.mark.timeout(60)

BASE = """\
name: app
artifact: {paths: [app]}
environments:
  dev: {targets: [{kind: local, name: d1, path: t/dev}]}
  production: {targets: [{kind: local, name: p1, path: t/prod}]}
pipeline:
  - {name: build, kind: build}
notifications:
"""


def parse(notifications: str) -> tuple[WebhookNotification | EmailNotification, ...]:
    return parse_config(BASE + notifications, path=Path("/p/slipway.yml")).project.notifications


def test_receivers_parse_with_their_defaults_and_secret_references() -> None:
    hook, mail = parse(
        """  - {kind: webhook, url: {env: HOOK_URL}, format: slack, environments: [production]}
  - kind: email
    to: ops@example.com
    from: slipway@example.com
    events: deployment_failed
    smtp: {host: mail.example.com, port: 587, starttls: true, username: u, password: {file: smtp.pw}}
"""
    )
    assert isinstance(hook, WebhookNotification) and isinstance(mail, EmailNotification)
    assert hook.events == ALL_EVENTS and (hook.timeout, hook.attempts) == (5.0, 3)
    assert hook.describe() == "webhook environment variable HOOK_URL"
    assert hook.wants(NotifyEvent.ROLLBACK, "production") and not hook.wants(NotifyEvent.ROLLBACK, "dev")
    assert mail.to == ("ops@example.com",) and mail.from_ == "slipway@example.com"
    assert mail.events == (NotifyEvent.DEPLOYMENT_FAILED,) and not mail.wants(NotifyEvent.ROLLBACK, "dev")
    assert mail.smtp.password is not None and mail.smtp.password.file == "smtp.pw"


def test_a_plain_webhook_url_is_named_without_its_query() -> None:
    [hook] = parse("  - {kind: webhook, url: 'https://hooks.example.com/x?token=s3cret'}\n")
    assert hook.describe() == "webhook https://hooks.example.com/x"


@pytest.mark.parametrize(
    ("notifications", "says"),
    [
        ("  - {kind: webhook, url: http://x, environments: [staging]}\n", "no environment staging"),
        ("  - {kind: webhook, url: ftp://x}\n", "http:// or https://"),
        ("  - {kind: webhook, url: http://x, events: [deployed]}\n", "events"),
        ("  - {kind: webhook, url: http://x, timeout: 0}\n", "timeout"),
        ("  - {kind: email, to: [a@b.c], from: s@b.c, smtp: {host: m, username: u}}\n", "both username and password"),
        ("  - {kind: pager, url: http://x}\n", "kind"),
    ],
)
def test_a_bad_receiver_is_a_config_error(notifications: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(notifications)
    assert says in str(err.value)


MESSAGE = Message(
    NotifyEvent.DEPLOYMENT_FAILED,
    "app",
    "app: deployment to dev failed, run 7",
    environment="dev",
    run=7,
    commit="0123456789abcdef",
    by="alice",
    outcome="failed",
    error="exit 3: token s3cret-value refused",
    at=0.0,
)


def test_every_format_carries_the_facts_and_masked_texts() -> None:
    masked = MESSAGE.masked(lambda text: text.replace("s3cret-value", "***"))
    link = masked.link("https://slipway.example.com/")
    assert link == "https://slipway.example.com/projects/app/runs/7" and masked.link(None) is None
    body = json_body(masked, link)
    assert body == {
        "event": "deployment_failed",
        "project": "app",
        "text": "app: deployment to dev failed, run 7",
        "environment": "dev",
        "run": 7,
        "commit": "0123456789abcdef",
        "by": "alice",
        "outcome": "failed",
        "error": "exit 3: token *** refused",
        "url": link,
        "at": "1970-01-01T00:00:00+00:00",
    }
    slack = slack_body(masked, link)
    assert slack["text"].endswith(f"<{link}|run 7>") and "*commit:* 0123456789ab" in str(slack["blocks"])
    mail = email(masked, None, sender="s@example.com", to=("a@example.com", "b@example.com"))
    assert mail["Subject"] == "[slipway] app: deployment to dev failed, run 7"
    assert mail["To"] == "a@example.com, b@example.com"
    assert "token *** refused" in mail.get_content() and "s3cret" not in mail.as_string()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:
                return

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept (close alone does not), which then returns
    acceptor.join(10)
    sock.close()
    for conn in held:  # only now: a connection accepted while the test ended is closed too
        conn.close()


def test_a_delivery_that_hangs_is_given_up_on_within_the_wait_and_recorded(silent_server: str) -> None:
    [hook] = parse("  - {kind: webhook, url: {env: URL}, timeout: 60, attempts: 1}\n")
    failures: list[str] = []
    notifier = Notifier()
    started = time.monotonic()
    notifier.submit(Delivery(hook, "hook", silent_server, {"event": "x"}, lambda t: t, failures.append))
    submitted = time.monotonic() - started
    assert notifier.drain(0.5) == 1
    waited = time.monotonic() - started
    assert submitted < 0.5 and waited < 5, (submitted, waited)  # the receiver's 60 s are never waited for
    assert len(failures) == 1 and failures[0].startswith("gave up")


def test_a_refused_delivery_is_recorded_masked_after_its_attempts() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    [hook] = parse("  - {kind: webhook, url: {env: URL}, timeout: 2, attempts: 2}\n")
    failures: list[str] = []
    done = threading.Event()

    def failed(error: str) -> None:
        failures.append(error)
        done.set()

    url = f"http://127.0.0.1:{port}/hook?token=tok-123456"
    Notifier().submit(Delivery(hook, "hook", url, {}, lambda t: t.replace("tok-123456", "***"), failed))
    assert done.wait(20)
    assert "(after 2 attempt(s))" in failures[0] and "ConnectError" in failures[0]
    assert "tok-123456" not in failures[0]
