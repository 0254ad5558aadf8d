"""Issue 14, notifications: webhooks (JSON and Slack-shaped) and email reach real local receivers from real runs
of the example project through the CLI, with every secret of the project masked; a receiver that never
answers does not hold up the deployment."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword

from tests.e2e.conftest import Project
from tests.support.ports import free_port
from tests.support.receiver import Receiver as Receiver  # used here and by the server's notification tests

pytestmark = pytest.mark.timeout(300)

#: The example's pipeline cut to what these tests need: one deploy, then a gate before production.
PIPELINE = """pipeline:
  - {name: build, kind: build}
  - {name: deploy-dev, kind: deploy, environment: dev}
  - {name: approve-production, kind: approval}
  - {name: deploy-production, kind: deploy, environment: production}
"""
WAIT = 20.0  # seconds a test waits for what a receiver should have got (the CLI already waited up to 5 s)


class Hanging:
    """A receiver that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)  # held open, never read, never answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class Mailbox:
    """aiosmtpd's handler: keeps every message it is sent, and the logins."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self.logins: list[tuple[str, str]] = []
        self.changed = threading.Condition()

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        with self.changed:
            self.messages.append(envelope)
            self.changed.notify_all()
        return "250 OK"

    def authenticate(self, server: object, session: object, envelope: object, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=True)

    def wait(self, count: int) -> list[Envelope]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.messages) >= count, timeout=WAIT), "no email arrived"
            return list(self.messages)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box, hostname="127.0.0.1", port=port, authenticator=box.authenticate, auth_require_tls=False
    )
    controller.start()
    yield box, port
    controller.stop()


def configure(project: Project, extra: str, notifications: str) -> None:
    """Cut the pipeline, add what the test needs to the environments, append ``notifications:``, commit."""
    config = project.root / "slipway.yml"
    text = config.read_text()
    text = text[: text.index("\npipeline:") + 1] + PIPELINE
    config.write_text(text + extra + "\nnotifications:\n" + notifications)
    project.commit("notifications")


def audit(project: Project, action: str) -> list[tuple[str, str]]:
    with sqlite3.connect(project.root / ".slipway/state.db") as db:
        return list(db.execute("SELECT subject, detail FROM audit_log WHERE action = ?", (action,)))


def test_webhooks_get_the_json_and_the_slack_body_of_an_approval_and_a_deployment(
    project: Project, receiver: Receiver
) -> None:
    token = "xoxb-slack-token-4711"
    configure(
        project,
        "",
        f"""  - kind: webhook
    url: {receiver.url}/json
    events: [approval_needed, deployment_succeeded]
    server_url: http://slipway.example:8470/
  - kind: webhook
    url: {{env: NOTIFY_SLACK_URL}}
    format: slack
    events: [approval_needed, deployment_succeeded]
  - kind: webhook
    url: {receiver.url}/staging-only
    environments: [staging]
""",
    )
    slack_url = f"{receiver.url}/slack?token={token}"
    proc = project.slipway("run", "--json", extra_env={"NOTIFY_SLACK_URL": slack_url})
    run = json.loads(proc.stdout)
    assert run["state"] == "waiting"
    posts = receiver.wait_for(lambda p: len(p) >= 4)
    by_path: dict[str, dict[str, dict[str, Any]]] = {}
    for path, body in posts:
        event = body.get("event") or ("approval" if "waits for approval" in body["text"] else "deployed")
        by_path.setdefault(path.split("?")[0], {})[event] = body
    assert set(by_path) == {"/json", "/slack"}, posts  # the staging-only receiver heard of nothing
    assert all("token=" + token in path for path, _ in posts if path.startswith("/slack"))
    commit = project.json("history")[0]["commit"]
    dev = project.status()["dev"]

    deployed = by_path["/json"]["deployment_succeeded"]
    assert {k: deployed[k] for k in ("project", "environment", "run", "release", "commit", "by", "outcome")} == {
        "project": "webapp",
        "environment": "dev",
        "run": run["id"],
        "release": dev["release"],
        "commit": commit,
        "by": "tester",
        "outcome": "succeeded",
    }
    assert deployed["url"] == f"http://slipway.example:8470/projects/webapp/runs/{run['id']}"
    gate = by_path["/json"]["approval_needed"]
    assert (gate["environment"], gate["run"], gate["outcome"]) == ("production", run["id"], "waiting")
    assert "approve-production" in gate["text"]

    slack_gate, slack_deployed = by_path["/slack"]["approval"], by_path["/slack"]["deployed"]
    assert f"run {run['id']} waits for approval at approve-production before production" in slack_gate["text"]
    assert slack_gate["blocks"][0]["type"] == "section"
    assert "succeeded" in slack_deployed["text"] and dev["release"] in slack_deployed["text"]
    facts = slack_deployed["blocks"][1]["elements"][0]["text"]
    assert "*environment:* dev" in facts and "*by:* tester" in facts
    assert audit(project, "notify.failed") == []


def test_a_failed_deployment_is_mailed_and_posted_with_every_secret_of_the_project_masked(
    project: Project, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    production_key = "prod-payments-key-9f8e7d"
    smtp_password = "smtp-password-5a5a"
    # dev's hook prints production's secret (it is in the CLI's environment): only the notification's
    # masking, which knows every secret of the project, keeps it out of the message.
    project.edit(
        "slipway.yml",
        "    configure:\n",
        "    configure:\n      - sh -c 'echo \"payments key $NOTIFY_PROD_KEY\" >&2; exit 3'\n",
    )
    project.edit(
        "slipway.yml",
        "    vars: {port: " + str(project.ports["production"]) + "}\n",
        "    vars: {port: " + str(project.ports["production"]) + "}\n"
        "    secrets: {PAYMENTS_KEY: {env: NOTIFY_PROD_KEY}}\n",
    )
    configure(
        project,
        "",
        f"""  - kind: webhook
    url: {receiver.url}/json
    events: [deployment_failed]
  - kind: email
    to: [ops@example.invalid]
    from: slipway@example.invalid
    events: deployment_failed
    smtp: {{host: 127.0.0.1, port: {port}, username: slipway, password: {{env: NOTIFY_SMTP_PASSWORD}}}}
""",
    )
    env = {"NOTIFY_PROD_KEY": production_key, "NOTIFY_SMTP_PASSWORD": smtp_password}
    proc = project.slipway("run", "--json", check=False, extra_env=env)
    assert proc.returncode != 0
    [(_, posted)] = receiver.wait_for(lambda p: len(p) >= 1)
    [mail] = box.wait(1)

    assert posted["event"] == "deployment_failed" and posted["environment"] == "dev"
    assert "payments key ***" in posted["error"]
    assert production_key not in json.dumps(posted)
    message = message_from_bytes(mail.original_content or b"")
    body = message.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert message["Subject"].startswith("[slipway] webapp: deployment to dev failed")
    assert mail.rcpt_tos == ["ops@example.invalid"] and message["From"] == "slipway@example.invalid"
    assert "payments key ***" in body and "environment: dev" in body
    assert production_key not in body and smtp_password not in body
    assert box.logins == [("slipway", smtp_password)]  # the password reached the server from its secret
    assert audit(project, "notify.failed") == []


def test_a_breaker_that_opens_is_notified(project: Project, receiver: Receiver) -> None:
    closed = free_port()  # nothing listens there: the dependency's check fails and its breaker opens
    project.edit(
        "slipway.yml",
        "    vars: {port: " + str(project.ports["dev"]) + "}\n",
        "    vars: {port: " + str(project.ports["dev"]) + "}\n"
        f"    dependencies:\n      - {{kind: tcp, name: payments, host: 127.0.0.1, port: {closed}, timeout: 2,"
        " breaker: {window: 1, min_calls: 1}}\n",
    )
    configure(project, "", f"  - {{kind: webhook, url: '{receiver.url}/hook', events: [breaker_open]}}\n")
    assert project.slipway("run", check=False).returncode != 0
    [(_, posted)] = receiver.wait_for(lambda p: len(p) >= 1)
    assert (posted["event"], posted["environment"], posted["outcome"]) == ("breaker_open", "dev", "open")
    assert "dev/payments" in posted["text"]
    assert "1 of the last 1 checks failed" in posted["error"]


def test_a_receiver_that_never_answers_does_not_hold_up_the_deployment(project: Project) -> None:
    hanging = Hanging()
    token = "hook-token-31337"
    try:
        configure(
            project,
            "",
            """  - kind: webhook
    url: {env: NOTIFY_HOOK_URL}
    events: [deployment_succeeded, approval_needed]
    timeout: 120
    attempts: 1
""",
        )
        started = time.monotonic()
        proc = project.slipway("run", "--json", timeout=110, extra_env={"NOTIFY_HOOK_URL": f"{hanging.url}/?t={token}"})
        elapsed = time.monotonic() - started
    finally:
        hanging.close()
    assert json.loads(proc.stdout)["state"] == "waiting"
    # Waiting on the receiver would take its 120 s timeout per message; the CLI gives up after 5 s in all.
    assert elapsed < 60, f"the run took {elapsed:.1f}s"
    assert len(hanging.accepted) >= 1  # the deliveries were attempted
    failed = audit(project, "notify.failed")
    assert len(failed) == 2, failed
    for subject, detail in failed:
        assert subject == "webhook environment variable NOTIFY_HOOK_URL"
        assert "gave up" in json.loads(detail)["error"] and token not in detail
    assert "notification deployment_succeeded to webhook environment variable NOTIFY_HOOK_URL failed" in proc.stderr


def test_a_rollback_is_notified_with_the_release_it_went_back_to(project: Project, receiver: Receiver) -> None:
    configure(project, "", f"  - {{kind: webhook, url: '{receiver.url}/hook', events: [rollback]}}\n")
    project.slipway("run")
    first = project.status()["dev"]["release"]
    project.edit("app/store.py", "oldest first", "oldest first (v2)")
    project.commit("webapp: v2")
    project.slipway("run")
    assert project.status()["dev"]["release"] != first
    assert receiver.posts == []  # deployments are not rollbacks
    rollback = project.json("rollback", "dev", "--reason", "v2 is broken")
    [(_, posted)] = receiver.wait_for(lambda p: len(p) >= 1)
    assert (posted["event"], posted["environment"], posted["outcome"]) == ("rollback", "dev", "succeeded")
    assert (posted["release"], posted["run"]) == (first, rollback["id"])
    assert posted["text"] == f"webapp: dev rolled back to release {first}, run {rollback['id']}"
