"""What starts a run without a person: the ``triggers:`` of slipway.yml, and the forges' webhook deliveries.

Pure: signature checks (HMAC over the raw body, compared in constant time), delivery ids and the events a
delivery carries, as each forge sends them. Fetching the repository and starting runs is
:mod:`slipway.services.triggers`; the HTTP endpoint is :mod:`slipway.api.hooks`. docs/triggers.md is the
manual.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator

from slipway.model.base import Frozen, SecretRef

BRANCH_RE = r"^[A-Za-z0-9._/-]+$"


class Forge(StrEnum):
    """Where a repository is hosted: who sends webhooks and receives commit statuses."""

    GITHUB = "github"
    GITLAB = "gitlab"
    GITEA = "gitea"
    FORGEJO = "forgejo"


class ForgeSpec(Frozen):
    """The forge's API, for commit statuses on merge requests (docs/triggers.md)."""

    kind: Forge
    #: Base URL of the API: https://api.github.com, https://gitlab.example.com/api/v4, https://git.example.com/api/v1.
    api_url: str = Field(min_length=1)
    #: owner/name on GitHub, Gitea and Forgejo; the project's id or path (group/name) on GitLab.
    repository: str = Field(min_length=1)
    #: An API token allowed to set commit statuses; never stored, masked everywhere.
    token: SecretRef
    #: The name the status has on the forge (GitHub "context", GitLab "name").
    context: str = Field(default="slipway", min_length=1, max_length=100)
    #: Base URL of ``slipway serve`` as people reach it: statuses link to the run's page there.
    server_url: str | None = None

    @field_validator("api_url", "server_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, not {value[:30]!r}")
        return value.rstrip("/") if value else value


class TriggerSpec(Frozen):
    """Which pushes start runs, where the repository is fetched from, and how often it is polled."""

    #: The trunk: a push to this branch runs the pipeline for its new commit.
    branch: str = Field(default="main", pattern=BRANCH_RE)
    #: The repository the commits are fetched from: a remote of the project's repository, or a URL.
    remote: str = Field(default="origin", min_length=1)
    #: The secret the forge signs deliveries with (GitHub, Gitea, Forgejo) or sends (GitLab).
    webhook_secret: SecretRef | None = None
    #: A private key for fetching over SSH (a deploy key); host keys are checked (``known_hosts``).
    ssh_key: SecretRef | None = None
    #: The known_hosts file for SSH fetches (default: the user's own).
    known_hosts: str | None = None
    #: A token for fetching over HTTPS (sent as HTTP basic auth, the way the forge expects it).
    token: SecretRef | None = None
    #: Seconds between two ``git ls-remote`` of the server's poller (none: the server does not poll).
    poll_interval: float | None = Field(default=None, ge=1, le=86400)
    #: The forge's API, for commit statuses of merge-request runs.
    forge: ForgeSpec | None = None


@dataclass(frozen=True)
class Push:
    """A push to a branch: ``commit`` is the branch's new head (None when the branch was deleted)."""

    branch: str
    commit: str | None
    pusher: str


@dataclass(frozen=True)
class MergeRequest:
    """A merge request opened, updated (new commits), reopened, merged or closed."""

    number: int
    action: str  # opened | updated | closed | merged | other
    head: str
    source_branch: str
    target_branch: str
    title: str

    @property
    def closes(self) -> bool:
        """Whether the request is over (its review environment goes)."""
        return self.action in ("closed", "merged")

    @property
    def builds(self) -> bool:
        """Whether the request has new code to build (opened, reopened, new commits)."""
        return self.action in ("opened", "updated")


@dataclass(frozen=True)
class Other:
    """A delivery that starts nothing (a ping, a tag, an event Slipway does not act on), and why."""

    event: str
    why: str


Event = Push | MergeRequest | Other


class BadDelivery(ValueError):
    """A signed delivery whose body is not what the forge sends (the message says what is wrong)."""


def signature(body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of ``body`` under ``secret``: what GitHub (after ``sha256=``), Gitea and Forgejo send."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(forge: Forge, headers: Mapping[str, str], body: bytes, secret: str) -> str | None:
    """None when the delivery is authentic, else why not (for the audit log; never the secret).

    ``headers`` by lower-case name. Every comparison is constant-time and over the exact bytes received.
    """
    if not secret:
        return "no webhook secret is configured"
    if forge is Forge.GITLAB:
        given = headers.get("x-gitlab-token")
        if given is None:
            return "no X-Gitlab-Token header"
        return None if hmac.compare_digest(given.encode(), secret.encode()) else "X-Gitlab-Token does not match"
    name = {
        Forge.GITHUB: "x-hub-signature-256",
        Forge.GITEA: "x-gitea-signature",
        Forge.FORGEJO: "x-forgejo-signature",
    }[forge]
    given = headers.get(name)
    if given is None:
        return f"no {name} header"
    expected = signature(body, secret)
    if forge is Forge.GITHUB:
        expected = "sha256=" + expected
    return None if hmac.compare_digest(given.strip().encode(), expected.encode()) else f"{name} does not match the body"


def delivery_id(forge: Forge, headers: Mapping[str, str], body: bytes) -> str:
    """The forge's id of this delivery (the same on a redelivery), or the body's SHA-256 when it sends none."""
    names = {
        Forge.GITHUB: ("x-github-delivery",),
        Forge.GITLAB: ("idempotency-key", "x-gitlab-event-uuid", "x-gitlab-webhook-uuid"),
        Forge.GITEA: ("x-gitea-delivery",),
        Forge.FORGEJO: ("x-forgejo-delivery", "x-gitea-delivery"),
    }[forge]
    for name in names:
        value = headers.get(name, "").strip()
        if value:
            return value[:200]
    return "sha256:" + hashlib.sha256(body).hexdigest()


def event_name(forge: Forge, headers: Mapping[str, str], body: Mapping[str, Any]) -> str:
    """The event's name as the forge gives it (push, pull_request, Merge Request Hook ...)."""
    header = {
        Forge.GITHUB: "x-github-event",
        Forge.GITLAB: "x-gitlab-event",
        Forge.GITEA: "x-gitea-event",
        Forge.FORGEJO: "x-forgejo-event",
    }[forge]
    return headers.get(header) or headers.get("x-gitea-event") or str(body.get("object_kind", "")) or "unknown"


def parse_event(forge: Forge, headers: Mapping[str, str], body: bytes) -> Event:
    """What an authentic delivery asks for; BadDelivery when its body is not the forge's JSON."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadDelivery(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadDelivery("the body is not a JSON object")
    name = event_name(forge, headers, data)
    try:
        if forge is Forge.GITLAB:
            return _gitlab(name, data)
        return _github_like(name, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BadDelivery(f"a {name} event without the field {exc}") from None


_NULL_SHA = "0" * 40


def _push(ref: str, after: str | None, pusher: str, event: str) -> Event:
    if not ref.startswith("refs/heads/"):
        return Other(event, f"{ref} is not a branch")
    deleted = not after or after == _NULL_SHA
    return Push(ref[len("refs/heads/"):], None if deleted else _sha(after), pusher)


def _sha(value: Any) -> str:
    text = str(value)
    if len(text) not in (40, 64) or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"commit {text[:70]!r}")
    return text


def _github_like(name: str, data: Mapping[str, Any]) -> Event:
    """GitHub, and Gitea and Forgejo, which send the same shapes."""
    if name == "push":
        pusher = data.get("pusher") or {}
        who = str(pusher.get("name") or pusher.get("login") or pusher.get("username") or "")
        return _push(str(data["ref"]), data.get("after"), who, name)
    if name == "pull_request":
        pr = data["pull_request"]
        action = str(data["action"])
        if action == "closed":
            action = "merged" if pr.get("merged") else "closed"
        elif action in ("opened", "reopened"):
            action = "opened"
        elif action in ("synchronize", "synchronized"):
            action = "updated"
        else:
            action = "other"
        return MergeRequest(
            number=int(data.get("number") or pr["number"]),
            action=action,
            head=_sha(pr["head"]["sha"]),
            source_branch=str(pr["head"]["ref"]),
            target_branch=str(pr["base"]["ref"]),
            title=str(pr.get("title") or ""),
        )
    return Other(name, "Slipway acts on push and pull_request events")


def _gitlab(name: str, data: Mapping[str, Any]) -> Event:
    kind = data.get("object_kind")
    if kind == "push":
        return _push(str(data["ref"]), data.get("after") or data.get("checkout_sha"), str(data.get("user_username") or data.get("user_name") or ""), name)
    if kind == "merge_request":
        attrs = data["object_attributes"]
        action = {"open": "opened", "reopen": "opened", "update": "updated", "close": "closed", "merge": "merged"}.get(
            str(attrs.get("action")), "other"
        )
        if action == "updated" and not attrs.get("oldrev"):
            action = "other"  # a change of title or labels: no new commits
        return MergeRequest(
            number=int(attrs["iid"]),
            action=action,
            head=_sha(attrs["last_commit"]["id"]),
            source_branch=str(attrs["source_branch"]),
            target_branch=str(attrs["target_branch"]),
            title=str(attrs.get("title") or ""),
        )
    return Other(name, "Slipway acts on push and merge_request events")


def merge_request_ref(forge: Forge, number: int) -> str:
    """The ref under which the forge keeps a merge request's head commit."""
    return f"refs/merge-requests/{number}/head" if forge is Forge.GITLAB else f"refs/pull/{number}/head"


@dataclass(frozen=True)
class StatusRequest:
    """The HTTP request that sets a commit status on the forge (built here, sent by services/forge.py)."""

    url: str
    headers: dict[str, str]
    body: dict[str, str]
    #: Attempts before the failure is recorded, and seconds each may take.
    attempts: int = 3
    timeout: float = 10.0


#: Slipway's status (pending, success, failure, error) as each forge names it.
_STATES = {
    Forge.GITLAB: {"pending": "running", "success": "success", "failure": "failed", "error": "failed"},
}


def status_request(spec: ForgeSpec, token: str, *, commit: str, state: str, description: str,
                   target_url: str | None) -> StatusRequest:
    """The forge's "create a commit status" call: GitHub's and Gitea/Forgejo's ``POST /repos/{repo}/statuses/{sha}``,
    GitLab's ``POST /projects/{id}/statuses/{sha}``; ``state`` is pending, success, failure or error."""
    from urllib.parse import quote

    if state not in ("pending", "success", "failure", "error"):
        raise ValueError(f"commit status {state!r}")
    named = _STATES.get(spec.kind, {}).get(state, state)
    text = description[:140]  # GitHub's limit
    if spec.kind is Forge.GITLAB:
        body = {"state": named, "name": spec.context, "description": text}
        url = f"{spec.api_url}/projects/{quote(spec.repository, safe='')}/statuses/{commit}"
        headers = {"PRIVATE-TOKEN": token}
    else:
        body = {"state": named, "context": spec.context, "description": text}
        url = f"{spec.api_url}/repos/{spec.repository}/statuses/{commit}"
        scheme = "Bearer" if spec.kind is Forge.GITHUB else "token"
        headers = {"Authorization": f"{scheme} {token}", "Accept": "application/json"}
    if target_url:
        body["target_url"] = target_url
    return StatusRequest(url, {**headers, "User-Agent": "slipway"}, body)
