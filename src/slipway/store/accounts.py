"""Server accounts: users (argon2 password hashes), API tokens and web sessions (SHA-256 only), role grants.

Nothing here hashes or checks a password: the store keeps what services/accounts.py computes. Every
change is audited with the acting user.
"""

from __future__ import annotations

from sqlalchemy import delete, select, update

from slipway.model import records as rec
from slipway.store import schema as t
from slipway.store.base import StoreBase

#: ``last_used_at`` of a token is updated at most this often (seconds).
TOKEN_USE_GRANULARITY = 60.0


class AccountStore(StoreBase):
    """Users, their role grants, API tokens and web sessions."""

    def add_user(self, name: str, password_hash: str, *, actor: str) -> None:
        """Create a user (StoreError if the name is taken: the caller checks first for a clear message)."""
        with self._tx() as s:
            s.add(t.User(name=name, password_hash=password_hash, created_at=self._now(), disabled=False))
            self._audit(s, actor, "user.add", name, {})

    def user(self, name: str) -> rec.UserRecord | None:
        """One user with its grants, or None."""
        with self._tx() as s:
            row = s.get(t.User, name)
            if row is None:
                return None
            grants = s.execute(
                select(t.RoleGrant.role, t.RoleGrant.environments)
                .where(t.RoleGrant.user == name)
                .order_by(t.RoleGrant.role, t.RoleGrant.environments)
            ).all()
            return rec.UserRecord(row.name, row.disabled, row.created_at, tuple((g[0], g[1]) for g in grants))

    def users(self) -> list[rec.UserRecord]:
        """Every user, by name."""
        with self._tx() as s:
            names = list(s.scalars(select(t.User.name).order_by(t.User.name)))
        return [u for u in (self.user(n) for n in names) if u is not None]

    def password_hash(self, name: str) -> str | None:
        """The stored hash of an enabled user's password (None: no such user, or disabled)."""
        with self._tx() as s:
            row = s.get(t.User, name)
            return None if row is None or row.disabled else row.password_hash

    def set_password_hash(self, name: str, password_hash: str, *, actor: str) -> None:
        """Replace a user's password hash (also to upgrade its parameters); ends the user's web sessions."""
        with self._tx() as s:
            s.execute(update(t.User).where(t.User.name == name).values(password_hash=password_hash))
            s.execute(delete(t.WebSession).where(t.WebSession.user == name))
            if actor:
                self._audit(s, actor, "user.password", name, {})

    def set_user_disabled(self, name: str, disabled: bool, *, actor: str) -> None:
        """Disable (or enable) a user; disabling ends its sessions."""
        with self._tx() as s:
            s.execute(update(t.User).where(t.User.name == name).values(disabled=disabled))
            if disabled:
                s.execute(delete(t.WebSession).where(t.WebSession.user == name))
            self._audit(s, actor, "user.disable" if disabled else "user.enable", name, {})

    def grant(self, name: str, role: str, environments: str, *, actor: str) -> None:
        """Give ``name`` the role on the environments matching the pattern (idempotent)."""
        with self._tx() as s:
            if s.get(t.RoleGrant, (name, role, environments)) is None:
                s.add(t.RoleGrant(user=name, role=role, environments=environments))
            self._audit(s, actor, "role.grant", name, {"role": role, "environments": environments})

    def revoke(self, name: str, role: str, environments: str, *, actor: str) -> bool:
        """Take a grant away; False if there was none."""
        with self._tx() as s:
            gone = s.execute(
                delete(t.RoleGrant).where(
                    t.RoleGrant.user == name, t.RoleGrant.role == role, t.RoleGrant.environments == environments
                )
            ).rowcount  # type: ignore[attr-defined]
            self._audit(s, actor, "role.revoke", name, {"role": role, "environments": environments})
            return bool(gone)

    def add_token(self, name: str, label: str, token_hash: str, *, actor: str) -> int:
        """Keep a token's hash; returns the token's id."""
        with self._tx() as s:
            row = t.ApiToken(user=name, label=label, token_hash=token_hash, created_at=self._now())
            s.add(row)
            s.flush()
            self._audit(s, actor, "token.add", name, {"label": label, "id": row.id})
            return row.id

    def token_user(self, token_hash: str) -> str | None:
        """The enabled user a token belongs to (and marks it used), or None."""
        with self._tx() as s:
            row = s.execute(
                select(t.ApiToken, t.User.disabled)
                .join(t.User, t.User.name == t.ApiToken.user)
                .where(t.ApiToken.token_hash == token_hash)
            ).first()
            if row is None or row[1]:
                return None
            now = self._now()
            if row[0].last_used_at is None or now - row[0].last_used_at > TOKEN_USE_GRANULARITY:
                row[0].last_used_at = now  # not on every request: a write per API call would cost more than the call
            return row[0].user

    def tokens(self, name: str | None = None) -> list[rec.TokenRecord]:
        """Tokens' metadata, of one user or all."""
        with self._tx() as s:
            q = select(t.ApiToken).order_by(t.ApiToken.id)
            if name is not None:
                q = q.where(t.ApiToken.user == name)
            return [rec.TokenRecord(r.id, r.user, r.label, r.created_at, r.last_used_at) for r in s.scalars(q)]

    def revoke_token(self, token_id: int, *, actor: str) -> bool:
        """Delete a token; False if there was none."""
        with self._tx() as s:
            gone = s.execute(delete(t.ApiToken).where(t.ApiToken.id == token_id)).rowcount  # type: ignore[attr-defined]
            self._audit(s, actor, "token.revoke", f"token {token_id}", {})
            return bool(gone)

    def add_session(self, id_hash: str, name: str, csrf: str, *, ttl: float) -> None:
        """A signed-in browser (and sweep the sessions that ended)."""
        now = self._now()
        with self._tx() as s:
            s.execute(delete(t.WebSession).where(t.WebSession.expires_at < now))
            s.add(t.WebSession(id_hash=id_hash, user=name, csrf=csrf, created_at=now, expires_at=now + ttl))

    def session(self, id_hash: str) -> tuple[str, str] | None:
        """(user, csrf token) of a live session of an enabled user, or None."""
        with self._tx() as s:
            row = s.execute(
                select(t.WebSession.user, t.WebSession.csrf, t.WebSession.expires_at, t.User.disabled)
                .join(t.User, t.User.name == t.WebSession.user)
                .where(t.WebSession.id_hash == id_hash)
            ).first()
            if row is None or row[2] < self._now() or row[3]:
                return None
            return row[0], row[1]

    def end_session(self, id_hash: str) -> None:
        """Sign a browser out."""
        with self._tx() as s:
            s.execute(delete(t.WebSession).where(t.WebSession.id_hash == id_hash))
