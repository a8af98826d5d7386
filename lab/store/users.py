"""Users, API tokens and the fair claim: tables `users` and `api_tokens` (migration 0003) and the
store methods (a mixin of SqlStore) behind the lab server's auth and scheduling.

Tokens are stored as the sha256 of a high-entropy random token (service.auth makes them): the
database never holds a usable credential, and a lookup by hash needs no slow KDF because the
token is not a human password.

The fair claim is how one user's flood cannot starve another's single job. Every submit still
sends exactly one broker message, but a worker receiving a message does not run the message's
job: it claims the job that is next in fair order among the queued jobs of the same queue —
the owner with the fewest running jobs, then the owner served least recently (whose latest
start is oldest, never-served first), then that owner's highest priority, then the oldest job.
Messages and queued jobs stay one-to-one, so every job still runs exactly once: the message of a
job claimed early is later used to claim some other job; a message that finds nothing queued
is dropped (its job was canceled or deleted).
"""

from __future__ import annotations

import hmac
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from lab.clock import utcnow
from lab.store.base import ApiToken, Duplicate, Experiment, NotFound, User
from lab.store.orm import Base, ExperimentRow, UtcDateTime

CLAIM_CANDIDATES = 8  # fair-order candidates tried per round (others may win the race for one)
CLAIM_ROUNDS = 3


class UserRow(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    is_admin: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_name: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # sha256 hex
    label: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


U = UserRow.__table__
T = ApiTokenRow.__table__
E = ExperimentRow.__table__


def _user(row: sa.Row) -> User:
    return User(name=row.name, is_admin=bool(row.is_admin), created_at=row.created_at)


def _token(row: sa.Row) -> ApiToken:
    return ApiToken(id=row.id, user=row.user_name, label=row.label, created_at=row.created_at,
                    revoked_at=row.revoked_at)


class UserStoreMixin:
    """User/token methods and the fair claim of SqlStore (lab.store.base.Store documents
    them). Needs `self.sessions` and `self.start_attempt` from the class it is mixed into."""

    # ------------------------------------------------------------------ users

    def create_user(self, name: str, *, is_admin: bool = False) -> User:
        try:
            with self.sessions.write() as s:
                row = s.execute(sa.insert(U).values(name=name, is_admin=is_admin,
                                                    created_at=utcnow()).returning(U)).one()
                return _user(row)
        except IntegrityError:
            raise Duplicate(f"user {name!r} already exists") from None

    def get_user(self, name: str) -> User:
        with self.sessions.read() as s:
            row = s.execute(sa.select(U).where(U.c.name == name)).one_or_none()
        if row is None:
            raise NotFound(f"user {name!r} not found")
        return _user(row)

    def list_users(self) -> list[User]:
        with self.sessions.read() as s:
            return [_user(r) for r in s.execute(sa.select(U).order_by(U.c.name))]

    # ------------------------------------------------------------------ tokens

    def create_token(self, user: str, token_hash: str, *, label: str = "") -> ApiToken:
        self.get_user(user)  # NotFound before an IntegrityError on the foreign key
        with self.sessions.write() as s:
            row = s.execute(sa.insert(T).values(
                id=uuid.uuid4().hex, user_name=user, token_hash=token_hash, label=label,
                created_at=utcnow(), revoked_at=None).returning(T)).one()
            return _token(row)

    def user_for_token(self, token_hash: str) -> User | None:
        query = (sa.select(U, T.c.token_hash).join(T, T.c.user_name == U.c.name)
                 .where(T.c.token_hash == token_hash, T.c.revoked_at.is_(None)))
        with self.sessions.read() as s:
            row = s.execute(query).one_or_none()
        # found by an indexed equality; confirm in constant time before trusting it
        if row is None or not hmac.compare_digest(row.token_hash, token_hash):
            return None
        return _user(row)

    def list_tokens(self, user: str | None = None) -> list[ApiToken]:
        query = sa.select(T).order_by(T.c.created_at, T.c.id)
        if user is not None:
            query = query.where(T.c.user_name == user)
        with self.sessions.read() as s:
            return [_token(r) for r in s.execute(query)]

    def revoke_token(self, token_id: str) -> ApiToken:
        with self.sessions.write() as s:
            s.execute(sa.update(T).where(T.c.id == token_id, T.c.revoked_at.is_(None))
                      .values(revoked_at=utcnow()))
            row = s.execute(sa.select(T).where(T.c.id == token_id)).one_or_none()
        if row is None:
            raise NotFound(f"token {token_id!r} not found")
        return _token(row)

    # ------------------------------------------------------------------ quotas and fair claim

    def count_active(self, owner: str) -> int:
        from lab.store.quota_lock import count_active

        with self.sessions.read() as s:
            return count_active(s, owner)

    def _fair_candidates(self, queue: str | None) -> list[str]:
        owner = sa.func.coalesce(E.c.owner, "")
        running = (sa.select(owner.label("owner"), sa.func.count().label("n"))
                   .where(E.c.status == "running").group_by(owner).subquery())
        served = (sa.select(owner.label("owner"), sa.func.max(E.c.started_at).label("last"))
                  .where(E.c.started_at.is_not(None)).group_by(owner).subquery())
        same_queue = E.c.queue.is_(None) if queue is None else E.c.queue == queue
        query = (sa.select(E.c.id)
                 .outerjoin(running, running.c.owner == owner)
                 .outerjoin(served, served.c.owner == owner)
                 .where(E.c.status == "queued", E.c.cancel_requested.is_(False), same_queue)
                 .order_by(sa.func.coalesce(running.c.n, 0), sa.nulls_first(served.c.last.asc()),
                           E.c.priority.desc(), E.c.created_at, E.c.id)
                 .limit(CLAIM_CANDIDATES))
        with self.sessions.read() as s:
            return list(s.scalars(query))

    def claim_next(self, experiment_id: str, worker: str) -> Experiment | None:
        with self.sessions.read() as s:
            found = s.execute(sa.select(E.c.queue).where(E.c.id == experiment_id)).one_or_none()
        if found is None:  # deleted: its message is spent, the balance of messages still holds
            return None
        for _ in range(CLAIM_ROUNDS):
            candidates = self._fair_candidates(found.queue)
            if not candidates:
                break
            for candidate in candidates:  # start_attempt is conditional: a lost race is None
                claimed = self.start_attempt(candidate, worker)
                if claimed is not None:
                    return claimed
        # the message's own job may be cancel-requested while queued: let start_attempt settle it
        return self.start_attempt(experiment_id, worker)
