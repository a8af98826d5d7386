"""Quota admission inside the inserting transaction, so check and insert cannot interleave.

`admit(session, owner, adding, max_active)` first serialises the owner's submits, then counts
the owner's queued + running jobs, and raises QuotaExceeded when `adding` more would exceed
`max_active`; the caller inserts in the same transaction and the lock holds until its commit.
- PostgreSQL: a transaction-level advisory lock on the owner's name (other users never wait).
- SQLite: write transactions already begin with `BEGIN IMMEDIATE` (lab.store.session),
  which holds the database's single write lock from the first statement: nothing to add.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lab.store.base import QuotaExceeded
from lab.store.orm import ExperimentRow

E = ExperimentRow.__table__
LOCK_NAMESPACE = "advlab.owner:"


def lock_owner(session: Session, owner: str | None) -> None:
    """Hold the owner's submit lock until this transaction ends (no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        key = sa.func.hashtextextended(sa.literal(LOCK_NAMESPACE + (owner or "")), 0)
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def count_active(session: Session, owner: str | None) -> int:
    same_owner = E.c.owner.is_(None) if owner is None else E.c.owner == owner
    return int(session.execute(sa.select(sa.func.count()).select_from(E).where(
        same_owner, E.c.status.in_(("queued", "running")))).scalar_one())


def admit(session: Session, owner: str | None, adding: int, max_active: int | None) -> None:
    """Raise QuotaExceeded unless the owner may add `adding` jobs now (lock taken by the caller
    with lock_owner, before it looked up its idempotency key)."""
    if max_active is None:
        return
    active = count_active(session, owner)
    if active + adding > max_active:
        raise QuotaExceeded(owner, active=active, adding=adding, limit=max_active)
