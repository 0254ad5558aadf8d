"""Who may do what where (model/access.py) and which environments an action touches (services/accounts.py);
accounts in a real store: argon2 hashes, hashed tokens and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.errors import AccessDenied, ConfigError, NotAuthenticated, StateError
from slipway.model.access import Action, allows
from slipway.model.records import RunRecord, StageRecord
from slipway.model.states import RunKind, StageKind, State
from slipway.services import accounts
from slipway.store.repository import Store


@pytest.mark.parametrize(
    ("grants", "action", "environment", "allowed"),
    [
        ([("approver", "production")], Action.APPROVE, "production", True),
        ([("approver", "production")], Action.APPROVE, "staging", False),
        ([("approver", "production")], Action.DEPLOY, "production", False),
        ([("approver", "prod*")], Action.APPROVE, "production-eu", True),
        ([("deployer", "*")], Action.ROLLBACK, "production", True),
        ([("deployer", "*")], Action.APPROVE, "dev", False),
        ([("deployer", "staging")], Action.VIEW, None, True),  # any grant reads
        ([("deployer", "staging")], Action.ADMIN, None, False),  # no particular environment: only '*'
        ([("admin", "*")], Action.ADMIN, None, True),
        ([("admin", "staging")], Action.ADMIN, None, False),
        ([("viewer", "*")], Action.UNLOCK, "dev", False),
        ([("wizard", "*")], Action.VIEW, None, False),  # an unknown role grants nothing
        ([], Action.VIEW, None, False),
    ],
)
def test_a_grant_allows_what_its_role_permits_where_its_pattern_matches(
    grants: list[tuple[str, str]], action: Action, environment: str | None, allowed: bool
) -> None:
    assert allows(grants, action, environment) is allowed


def _run(*stages: tuple[str, StageKind, str | None, State]) -> RunRecord:
    records = tuple(
        StageRecord(i, 1, i, name, kind, env, state, None, None) for i, (name, kind, env, state) in enumerate(stages)
    )
    return RunRecord(1, "p", RunKind.PIPELINE, "c" * 40, State.WAITING, None, "x", 0.0, None, "", "", None, records)


def test_the_environments_a_gate_guards_are_those_deployed_until_the_next_gate() -> None:
    ok, wait, pend = State.SUCCEEDED, State.WAITING, State.PENDING
    run = _run(
        ("build", StageKind.BUILD, None, ok), ("dev", StageKind.DEPLOY, "dev", ok), ("gate", StageKind.APPROVAL, None, wait),
        ("eu", StageKind.DEPLOY, "prod-eu", pend), ("smoke", StageKind.POST_DEPLOY, "prod-eu", pend),
        ("us", StageKind.DEPLOY, "prod-us", pend), ("gate2", StageKind.APPROVAL, None, pend), ("x", StageKind.DEPLOY, "dr", pend),
    )  # fmt: skip
    assert accounts.run_environments_ahead(run) == ["prod-eu", "prod-us"]
    canary = _run(("build", StageKind.BUILD, None, ok), ("prod", StageKind.DEPLOY, "production", wait))
    assert accounts.run_environments_ahead(canary) == ["production"]
    assert accounts.environments_ahead([(s.kind, s.environment) for s in run.stages]) == ["dev"]


def test_accounts_keep_only_hashes_and_refuse_what_they_should(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        accounts.add_user(store, "alice", "a long enough password", roles=(("approver", "production"),), actor="root")
        with pytest.raises(StateError, match="exists"):
            accounts.add_user(store, "alice", "a long enough password", actor="root")
        with pytest.raises(ConfigError, match="at least 12"):
            accounts.add_user(store, "bob", "short", actor="root")
        with pytest.raises(ConfigError, match="not a valid user name"):
            accounts.add_user(store, "Bob Smith", "a long enough password", actor="root")
        with pytest.raises(ConfigError, match="no role 'wizard'"):
            accounts.add_user(store, "carol", "a long enough password", roles=(("wizard", "*"),), actor="root")
        stored = store.password_hash("alice")
        assert stored and stored.startswith("$argon2id$") and "a long enough password" not in stored

        user = accounts.sign_in(store, "alice", "a long enough password")
        user.require(Action.APPROVE, "production")
        with pytest.raises(AccessDenied, match="alice may not approve on staging"):
            user.require(Action.APPROVE, "staging")
        for name, password in (("alice", "wrong password!!"), ("nobody", "a long enough password")):
            with pytest.raises(NotAuthenticated, match="wrong user name or password"):
                accounts.sign_in(store, name, password)

        token = accounts.create_token(store, "alice", "ci", actor="alice")
        assert accounts.authenticate_token(store, token).name == "alice"
        assert [t.label for t in store.tokens("alice")] == ["ci"]
        with store.engine.connect() as conn:
            dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_tokens"))
        assert token not in dump and accounts.digest(token) in dump
        session_id, csrf = accounts.open_session(store, "alice")
        assert accounts.session_user(store, session_id) == (user, csrf)

        store.set_user_disabled("alice", True, actor="root")  # a disabled user has no token, no session
        with pytest.raises(NotAuthenticated):
            accounts.authenticate_token(store, token)
        assert accounts.session_user(store, session_id) is None
        with pytest.raises(NotAuthenticated):
            accounts.sign_in(store, "alice", "a long enough password")
        assert [a.action for a in store.audit_log()][:3] == ["user.disable", "token.add", "role.grant"]
    finally:
        store.close()
