"""Sweep persistence: the `sweeps` table, the `sweep_members` link table, and the store methods
(a mixin of SqlStore) that create and read them.

A sweep is a base spec + a grid over spec paths + seeds, expanded (service/sweeps.py) into member
experiments. The members are ordinary rows of `experiments` — workers run them like any other —
linked through `sweep_members` rather than a column on `experiments`, so the experiment table and
its domain object stay exactly as they are. A sweep and all its members are inserted in ONE
transaction: a sweep is never visible half-created, and every member is committed before the
first is enqueued. Deleting an experiment drops its link (ON DELETE CASCADE); deleting a sweep
drops its links, not the experiments.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from lab.store.base import Experiment, NewSweepMember, NotFound, StoreError, Sweep, SweepMember
from lab.clock import utcnow
from lab.store.orm import Base, ExperimentRow, JsonType, UtcDateTime
from lab.store.orm import finite_json as _finite, to_experiment as _to_experiment


class SweepRow(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tags: Mapped[list[str]] = mapped_column(JsonType)
    base_spec: Mapped[dict[str, Any]] = mapped_column(JsonType)  # as submitted (not resolved)
    # [{"path": "training.mode", "values": [...]}, ...]: a list, since JSONB reorders object keys
    grid: Mapped[list[str]] = mapped_column(JsonType)
    seeds: Mapped[list[str]] = mapped_column(JsonType)
    seed_mode: Mapped[str] = mapped_column(sa.String(16))  # batched | separate
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))  # unique per owner
    owner: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        sa.Index("ix_sweeps_created_at_id", "created_at", "id"),
        sa.Index("uq_sweeps_owner_idempotency_key", "owner", "idempotency_key", unique=True),
    )


class SweepMemberRow(Base):
    __tablename__ = "sweep_members"

    sweep_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True,
        index=True)
    point_index: Mapped[int] = mapped_column(sa.Integer)  # position in the grid's product
    point: Mapped[dict[str, Any]] = mapped_column(JsonType)  # {"training.mode": "adversarial"}
    seeds: Mapped[list[str]] = mapped_column(JsonType)  # the seeds this member trains


SW = SweepRow.__table__
SM = SweepMemberRow.__table__
E = ExperimentRow.__table__


def _to_sweep(row: sa.Row, members: Sequence[sa.Row]) -> Sweep:
    m = row._mapping
    grid = [(g["path"], list(g["values"])) for g in m["grid"]]

    def in_grid_order(point: dict[str, Any]) -> dict[str, Any]:  # JSONB reorders object keys
        return {path: point[path] for path, _ in grid if path in point}

    return Sweep(
        id=m["id"], name=m["name"], tags=list(m["tags"]), base_spec=dict(m["base_spec"]),
        grid=grid, seeds=[int(s) for s in m["seeds"]], seed_mode=m["seed_mode"],
        created_at=m["created_at"], idempotency_key=m["idempotency_key"], owner=m["owner"],
        members=[SweepMember(experiment_id=r.experiment_id, point_index=r.point_index,
                             point=in_grid_order(r.point), seeds=[int(s) for s in r.seeds])
                 for r in members])


class SweepStoreMixin:
    """Sweep methods of SqlStore (lab.store.base.Store documents them). Needs `self.sessions`
    (lab.store.session.Sessions) from the class it is mixed into."""

    def _read_sweep(self, session, sweep_id: str) -> Sweep:
        row = session.execute(sa.select(SW).where(SW.c.id == sweep_id)).one_or_none()
        if row is None:
            raise NotFound(f"sweep {sweep_id!r} not found")
        members = session.execute(sa.select(SM).where(SM.c.sweep_id == sweep_id)
                                  .order_by(SM.c.point_index, SM.c.experiment_id)).all()
        return _to_sweep(row, members)

    def create_sweep(self, *, name: str, tags: list[str], base_spec: dict[str, Any],
                     grid: Sequence[tuple[str, list[Any]]], seeds: list[int], seed_mode: str,
                     members: Sequence[NewSweepMember], idempotency_key: str | None = None,
                     owner: str | None = None, priority: int = 0, max_active: int | None = None,
                     ) -> tuple[Sweep, list[Experiment], bool]:
        from lab.store.quota_lock import admit, lock_owner  # it imports orm

        def existing(session) -> tuple[Sweep, list[Experiment]] | None:
            same_owner = SW.c.owner.is_(None) if owner is None else SW.c.owner == owner
            found = session.execute(sa.select(SW.c.id).where(
                same_owner, SW.c.idempotency_key == idempotency_key)).scalar_one_or_none()
            if found is None:
                return None
            rows = session.execute(sa.select(E).join(SM, SM.c.experiment_id == E.c.id)
                                   .where(SM.c.sweep_id == found)
                                   .order_by(SM.c.point_index, E.c.id)).all()
            return self._read_sweep(session, found), [_to_experiment(r) for r in rows]

        now = utcnow()
        sweep_id = uuid.uuid4().hex
        sweep_values = dict(
            id=sweep_id, name=name, tags=list(tags), base_spec=_finite(base_spec),
            grid=[{"path": path, "values": _finite(list(values))} for path, values in grid],
            seeds=[int(s) for s in seeds], seed_mode=seed_mode, created_at=now,
            idempotency_key=idempotency_key, owner=owner)
        experiment_rows, link_rows = [], []
        for member in members:
            experiment_id = uuid.uuid4().hex
            experiment_rows.append(dict(
                id=experiment_id, name=member.name, tags=list(member.tags),
                spec=_finite(member.spec), spec_hash=member.spec_hash, status="queued", step=0,
                total_steps=member.total_steps, attempts=0, created_at=now,
                cancel_requested=False, retry_of=None, idempotency_key=None,
                owner=owner, priority=int(priority), queue=member.queue))
            link_rows.append(dict(sweep_id=sweep_id, experiment_id=experiment_id,
                                  point_index=member.point_index, point=_finite(member.point),
                                  seeds=[int(s) for s in member.seeds]))
        try:
            with self.sessions.write() as s:
                lock_owner(s, owner)
                if idempotency_key is not None and (found := existing(s)) is not None:
                    return (*found, False)
                admit(s, owner, len(experiment_rows), max_active)  # the whole sweep or nothing
                s.execute(sa.insert(SW).values(**sweep_values))
                created = [_to_experiment(s.execute(sa.insert(E).values(**row).returning(E)).one())
                           for row in experiment_rows]
                if link_rows:
                    s.execute(sa.insert(SM), link_rows)
                sweep = self._read_sweep(s, sweep_id)
        except IntegrityError as exc:
            if idempotency_key is not None:
                with self.sessions.read() as s:
                    if (found := existing(s)) is not None:
                        return (*found, False)  # a concurrent request with the same key won
            raise StoreError(f"could not create sweep: {exc.orig}") from exc
        return sweep, created, True

    def get_sweep(self, sweep_id: str) -> Sweep:
        with self.sessions.read() as s:
            return self._read_sweep(s, sweep_id)

    def sweep_experiments(self, sweep_id: str) -> list[Experiment]:

        with self.sessions.read() as s:
            if s.execute(sa.select(SW.c.id).where(SW.c.id == sweep_id)).first() is None:
                raise NotFound(f"sweep {sweep_id!r} not found")
            rows = s.execute(sa.select(E).join(SM, SM.c.experiment_id == E.c.id)
                             .where(SM.c.sweep_id == sweep_id)
                             .order_by(SM.c.point_index, E.c.id)).all()
        return [_to_experiment(r) for r in rows]

    def list_sweeps(self, *, limit: int = 50) -> list[Sweep]:
        with self.sessions.read() as s:
            ids = s.scalars(sa.select(SW.c.id).order_by(SW.c.created_at.desc(), SW.c.id.desc())
                            .limit(limit)).all()
            return [self._read_sweep(s, i) for i in ids]

    def sweeps_of(self, experiment_id: str) -> list[str]:
        with self.sessions.read() as s:
            return list(s.scalars(sa.select(SM.c.sweep_id)
                                  .where(SM.c.experiment_id == experiment_id)))

    def delete_sweep(self, sweep_id: str) -> None:
        with self.sessions.write() as s:
            s.execute(sa.delete(SM).where(SM.c.sweep_id == sweep_id))
            if s.execute(sa.delete(SW).where(SW.c.id == sweep_id)).rowcount == 0:
                raise NotFound(f"sweep {sweep_id!r} not found")
