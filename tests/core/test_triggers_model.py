"""Issue 14: forges' webhook deliveries as they send them: signatures, delivery ids, and the events in them."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from slipway.model.triggers import (
    BadDelivery,
    Forge,
    MergeRequest,
    Other,
    Push,
    delivery_id,
    merge_request_ref,
    parse_event,
    signature,
    verify,
)

SECRET = "It's a Secret to Everybody"
SHA = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "89abcdef0123456789abcdef0123456789abcdef"


def test_the_github_signature_matches_githubs_documented_example() -> None:
    # docs.github.com "Validating webhook deliveries": this secret and body give this signature
    body = b"Hello, World!"
    assert signature(body, SECRET) == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"x-hub-signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"}
    assert verify(Forge.GITHUB, headers, body, SECRET) is None


@pytest.mark.parametrize("forge,header", [(Forge.GITEA, "x-gitea-signature"), (Forge.FORGEJO, "x-forgejo-signature")])
def test_gitea_and_forgejo_sign_with_a_bare_hex_hmac(forge: Forge, header: str) -> None:
    body = b'{"ref": "refs/heads/main"}'
    good = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify(forge, {header: good}, body, SECRET) is None
    assert verify(forge, {header: "sha256=" + good}, body, SECRET) is not None  # GitHub's form is not theirs
    assert verify(forge, {header: good}, body + b" ", SECRET) is not None  # one byte more
    assert verify(forge, {}, body, SECRET) == f"no {header} header"


def test_github_refuses_a_tampered_body_another_secret_and_a_missing_header() -> None:
    body = b'{"after": "x"}'
    good = {"x-hub-signature-256": "sha256=" + signature(body, SECRET)}
    assert verify(Forge.GITHUB, good, body.replace(b"x", b"y"), SECRET) == "x-hub-signature-256 does not match the body"
    assert verify(Forge.GITHUB, good, body, "another") is not None
    assert verify(Forge.GITHUB, {"x-hub-signature": "sha1=whatever"}, body, SECRET) == "no x-hub-signature-256 header"
    assert verify(Forge.GITHUB, good, body, "") == "no webhook secret is configured"


def test_gitlab_sends_the_token_itself() -> None:
    assert verify(Forge.GITLAB, {"x-gitlab-token": SECRET}, b"{}", SECRET) is None
    assert verify(Forge.GITLAB, {"x-gitlab-token": SECRET + "x"}, b"{}", SECRET) == "X-Gitlab-Token does not match"
    assert verify(Forge.GITLAB, {}, b"{}", SECRET) == "no X-Gitlab-Token header"


def test_delivery_ids_come_from_each_forges_header_or_the_body() -> None:
    assert delivery_id(Forge.GITHUB, {"x-github-delivery": "72d3162e"}, b"{}") == "72d3162e"
    assert delivery_id(Forge.GITLAB, {"idempotency-key": "k1", "x-gitlab-event-uuid": "u1"}, b"{}") == "k1"
    assert delivery_id(Forge.GITLAB, {"x-gitlab-event-uuid": "u1"}, b"{}") == "u1"
    assert delivery_id(Forge.GITEA, {"x-gitea-delivery": "g1", "x-github-delivery": "g1"}, b"{}") == "g1"
    assert delivery_id(Forge.FORGEJO, {"x-gitea-delivery": "f1"}, b"{}") == "f1"
    assert delivery_id(Forge.GITHUB, {}, b"{}") == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def test_a_github_push_to_a_branch() -> None:
    event = parse_event(
        Forge.GITHUB, {"x-github-event": "push"},
        body({"ref": "refs/heads/main", "before": SHA2, "after": SHA, "pusher": {"name": "octocat"}}),
    )
    assert event == Push("main", SHA, "octocat")


def test_a_deleted_branch_a_tag_and_a_ping() -> None:
    deleted = parse_event(Forge.GITHUB, {"x-github-event": "push"}, body({"ref": "refs/heads/old", "after": "0" * 40}))
    assert deleted == Push("old", None, "")
    tag = parse_event(Forge.GITHUB, {"x-github-event": "push"}, body({"ref": "refs/tags/v1", "after": SHA}))
    assert isinstance(tag, Other) and "not a branch" in tag.why
    ping = parse_event(Forge.GITHUB, {"x-github-event": "ping"}, body({"zen": "Keep it logically awesome."}))
    assert isinstance(ping, Other) and ping.event == "ping"


@pytest.mark.parametrize(
    "action,merged,expected",
    [("opened", False, "opened"), ("reopened", False, "opened"), ("synchronize", False, "updated"),
     ("closed", True, "merged"), ("closed", False, "closed"), ("labeled", False, "other")],
)
def test_a_github_pull_request(action: str, merged: bool, expected: str) -> None:
    data = {
        "action": action,
        "number": 7,
        "pull_request": {
            "number": 7, "title": "Add a banner", "merged": merged,
            "head": {"sha": SHA, "ref": "feature"}, "base": {"sha": SHA2, "ref": "main"},
        },
    }
    event = parse_event(Forge.GITHUB, {"x-github-event": "pull_request"}, body(data))
    assert event == MergeRequest(7, expected, SHA, "feature", "main", "Add a banner")


def test_gitea_sends_githubs_shapes_with_synchronized() -> None:
    data = {
        "action": "synchronized", "number": 3,
        "pull_request": {"number": 3, "title": "t", "merged": False, "head": {"sha": SHA, "ref": "f"}, "base": {"ref": "main"}},
    }
    headers = {"x-gitea-event": "pull_request", "x-github-event": "pull_request"}
    event = parse_event(Forge.GITEA, headers, body(data))
    assert isinstance(event, MergeRequest) and event.action == "updated" and event.builds


def test_a_gitlab_push_and_merge_request() -> None:
    push = {"object_kind": "push", "ref": "refs/heads/main", "after": SHA, "user_username": "jsmith"}
    assert parse_event(Forge.GITLAB, {"x-gitlab-event": "Push Hook"}, body(push)) == Push("main", SHA, "jsmith")
    mr = {
        "object_kind": "merge_request",
        "object_attributes": {
            "iid": 12, "action": "update", "oldrev": SHA2, "title": "Banner",
            "source_branch": "feature", "target_branch": "main", "last_commit": {"id": SHA},
        },
    }
    event = parse_event(Forge.GITLAB, {"x-gitlab-event": "Merge Request Hook"}, body(mr))
    assert event == MergeRequest(12, "updated", SHA, "feature", "main", "Banner")
    mr["object_attributes"].pop("oldrev")  # type: ignore[attr-defined]  # a title change: nothing to build
    retitled = parse_event(Forge.GITLAB, {}, body(mr))
    assert isinstance(retitled, MergeRequest) and not retitled.builds and not retitled.closes
    mr["object_attributes"]["action"] = "merge"  # type: ignore[index]
    merged = parse_event(Forge.GITLAB, {}, body(mr))
    assert isinstance(merged, MergeRequest) and merged.closes


def test_bodies_that_are_not_the_forges_are_clear_errors() -> None:
    with pytest.raises(BadDelivery, match="not JSON"):
        parse_event(Forge.GITHUB, {"x-github-event": "push"}, b"ref=main")
    with pytest.raises(BadDelivery, match="without the field 'ref'"):
        parse_event(Forge.GITHUB, {"x-github-event": "push"}, body({"after": SHA}))
    with pytest.raises(BadDelivery, match="commit"):
        parse_event(Forge.GITHUB, {"x-github-event": "push"}, body({"ref": "refs/heads/main", "after": "; rm -rf /"}))


def test_where_each_forge_keeps_a_merge_requests_head() -> None:
    assert merge_request_ref(Forge.GITHUB, 7) == "refs/pull/7/head"
    assert merge_request_ref(Forge.GITLAB, 7) == "refs/merge-requests/7/head"


def forge_spec(kind: str, repository: str = "team/app") -> object:
    from slipway.model.triggers import ForgeSpec

    return ForgeSpec.model_validate(
        {"kind": kind, "api_url": "http://127.0.0.1:9/api/", "repository": repository, "token": {"env": "T"}}
    )


def test_commit_statuses_as_github_gitea_and_gitlab_take_them() -> None:
    from slipway.model.triggers import ForgeSpec, status_request

    github = forge_spec("github")
    assert isinstance(github, ForgeSpec)
    req = status_request(github, "tok", commit=SHA, state="failure", description="x" * 200, target_url="http://s/r/1")
    assert req.url == f"http://127.0.0.1:9/api/repos/team/app/statuses/{SHA}"
    assert req.headers["Authorization"] == "Bearer tok"
    assert req.body == {"state": "failure", "context": "slipway", "description": "x" * 140, "target_url": "http://s/r/1"}
    gitea = forge_spec("forgejo")
    assert isinstance(gitea, ForgeSpec)
    assert status_request(gitea, "tok", commit=SHA, state="success", description="", target_url=None).headers[
        "Authorization"] == "token tok"
    gitlab = forge_spec("gitlab", "group/sub/app")
    assert isinstance(gitlab, ForgeSpec)
    req = status_request(gitlab, "tok", commit=SHA, state="pending", description="build", target_url=None)
    assert req.url == f"http://127.0.0.1:9/api/projects/group%2Fsub%2Fapp/statuses/{SHA}"
    assert req.headers["PRIVATE-TOKEN"] == "tok" and req.body == {"state": "running", "name": "slipway", "description": "build"}
    assert status_request(gitlab, "t", commit=SHA, state="failure", description="", target_url=None).body["state"] == "failed"
    with pytest.raises(ValueError):
        status_request(gitlab, "t", commit=SHA, state="skipped", description="", target_url=None)
