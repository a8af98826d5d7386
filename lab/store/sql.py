"""SqlStore: the Store interface on SQLAlchemy Core (SQLite or PostgreSQL).

Status changes are single conditional UPDATEs (`WHERE status = .. AND attempts = ..`), so two
workers, a reaper and the API can race without read-modify-write bugs: the loser's UPDATE
matches no row and becomes a domain error. Worker writes carry their attempt number and first
lock the experiment row (FOR SHARE on PostgreSQL; SQLite write transactions are exclusive), so a
reaped zombie can never add points after the next attempt has cleared the old ones.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import uuid
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from lab.store import filters
from lab.store.base import (
    TERMINAL, CorrelationMatrix, Experiment, ExperimentFilter, IllegalTransition, MetricPoint,
    NotFound, Operations, Page, RunningJob, StaleAttempt, Status, Store, StoreError,
)
from lab.store.downsample import read_series
from lab.store.series import BLK, write_points
from lab.clock import utcnow
from lab.store.public_error import public_error
from lab.store.quota_lock import admit, lock_owner
from lab.status import STATUSES
from lab.store.orm import ExperimentRow, MatrixRow, MetricPointRow, MetricSeriesRow, UtcDateTime
from lab.store.orm import finite_json as _finite, to_experiment as _to_experiment
from lab.store.session import Sessions, WalCheckpointer, sqlite_file
from lab.store.sweeps import SweepStoreMixin
from lab.store.users import UserStoreMixin

log = logging.getLogger("advlab.store")

E = ExperimentRow.__table__
P = MetricPointRow.__table__
M = MatrixRow.__table__
SERIES = MetricSeriesRow.__table__


def _by_key(session: Session, owner: str | None, key: str) -> Experiment | None:
    """The owner's experiment submitted with Idempotency-Key `key` (keys are per owner)."""
    same_owner = E.c.owner.is_(None) if owner is None else E.c.owner == owner
    row = session.execute(sa.select(E).where(same_owner, E.c.idempotency_key == key)).first()
    return None if row is None else _to_experiment(row)


def _encode_cursor(created_at: datetime, experiment_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), experiment_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, experiment_id = json.loads(raw)
        return datetime.fromisoformat(created), str(experiment_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"invalid cursor: {cursor!r}") from exc


class SqlStore(UserStoreMixin, SweepStoreMixin, Store):  # mixins: users.py, sweeps.py
    def __init__(self, engine: sa.Engine, *, metric_batch: int = 500,
                 checkpoint_every_s: float | None = None) -> None:
        self.engine = engine
        self.sessions = Sessions(engine)
        self.metric_batch = metric_batch
        database = sqlite_file(engine)
        self.checkpointer = (WalCheckpointer(database, checkpoint_every_s).start()
                             if database and checkpoint_every_s else None)

    def close(self) -> None:
        """Release the connection pool (and stop the WAL checkpointer)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    # ------------------------------------------------------------------ helpers

    def _get(self, session: Session, experiment_id: str) -> Experiment:
        row = session.execute(sa.select(E).where(E.c.id == experiment_id)).one_or_none()
        if row is None:
            raise NotFound(experiment_id)
        return _to_experiment(row)

    def _update_returning(self, session: Session, experiment_id: str, where: Sequence,
                          values: dict[str, Any]) -> Experiment | None:
        stmt = sa.update(E).where(E.c.id == experiment_id, *where).values(**values).returning(E)
        row = session.execute(stmt).one_or_none()
        return None if row is None else _to_experiment(row)

    def _end_attempt(self, experiment_id: str, attempt: int, values: dict[str, Any]) -> Experiment:
        """Apply `values` only while `attempt` is the running attempt (finish, requeue: the
        conditional UPDATE that fences a stale worker out); StaleAttempt otherwise."""
        with self.sessions.write() as s:
            exp = self._update_returning(
                s, experiment_id, [E.c.attempts == attempt, E.c.status == "running"], values)
        if exp is None:
            raise StaleAttempt(f"{experiment_id}: attempt {attempt} is not the running attempt")
        return exp

    def _lock_attempt(self, session: Session, experiment_id: str, attempt: int) -> None:
        """Raise StaleAttempt unless `attempt` is the running attempt; hold the row until commit."""
        query = sa.select(E.c.attempts, E.c.status).where(E.c.id == experiment_id)
        if not self.sessions.is_sqlite:
            query = query.with_for_update(read=True)
        row = session.execute(query).one_or_none()
        if row is None or row.attempts != attempt or row.status != "running":
            raise StaleAttempt(f"{experiment_id}: attempt {attempt} is not the running attempt")

    # ------------------------------------------------------------------ experiments

    def create_experiment(self, *, name: str, tags: list[str], spec: dict[str, Any], spec_hash: str,
                          total_steps: int, idempotency_key: str | None = None,
                          retry_of: str | None = None, owner: str | None = None,
                          priority: int = 0, queue: str | None = None,
                          max_active: int | None = None) -> tuple[Experiment, bool]:
        values = dict(
            id=uuid.uuid4().hex, name=name, tags=list(tags), spec=_finite(spec), spec_hash=spec_hash,
            status="queued", step=0, total_steps=total_steps, attempts=0, created_at=utcnow(),
            cancel_requested=False, retry_of=retry_of, idempotency_key=idempotency_key,
            owner=owner, priority=int(priority), queue=queue,
        )
        try:
            with self.sessions.write() as s:
                lock_owner(s, owner)
                if idempotency_key is not None and (
                        found := _by_key(s, owner, idempotency_key)) is not None:
                    return found, False
                admit(s, owner, 1, max_active)
                row = s.execute(sa.insert(E).values(**values).returning(E)).one()
                return _to_experiment(row), True
        except IntegrityError as exc:
            if idempotency_key is not None:
                with self.sessions.read() as s:
                    if (found := _by_key(s, owner, idempotency_key)) is not None:
                        return found, False  # a concurrent request with the same key won
            if retry_of is not None:
                raise NotFound(retry_of) from exc
            raise StoreError(f"could not create experiment: {exc.orig}") from exc

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self.sessions.read() as s:
            return self._get(s, experiment_id)

    def list_experiments(self, flt: ExperimentFilter, *, limit: int = 50, cursor: str | None = None,
                         order: Literal["created_desc", "created_asc"] = "created_desc") -> Page:
        desc = order == "created_desc"
        with self.sessions.read() as s:
            conds = filters.experiment_conditions(flt, s.get_bind().dialect.name)
            if cursor:
                created, last_id = _decode_cursor(cursor)
                if desc:
                    conds.append(sa.or_(E.c.created_at < created,
                                        sa.and_(E.c.created_at == created, E.c.id < last_id)))
                else:
                    conds.append(sa.or_(E.c.created_at > created,
                                        sa.and_(E.c.created_at == created, E.c.id > last_id)))
            keys = (E.c.created_at.desc(), E.c.id.desc()) if desc else (E.c.created_at, E.c.id)
            rows = s.execute(sa.select(E).where(*conds).order_by(*keys).limit(limit + 1)).all()
        items = [_to_experiment(r) for r in rows[:limit]]
        more = len(rows) > limit and items
        return Page(items=items,
                    next_cursor=_encode_cursor(items[-1].created_at, items[-1].id) if more else None)

    def delete_experiment(self, experiment_id: str) -> None:
        with self.sessions.write() as s:
            # children explicitly too: correct even on a connection without foreign keys
            for child in (P, SERIES, BLK, M):
                s.execute(sa.delete(child).where(child.c.experiment_id == experiment_id))
            if s.execute(sa.delete(E).where(E.c.id == experiment_id)).rowcount == 0:
                raise NotFound(experiment_id)

    def update_experiment(self, experiment_id: str, *, tags: list[str] | None = None,
                          notes: str | None = None) -> Experiment:
        values: dict[str, Any] = {}
        if tags is not None:
            values["tags"] = list(tags)
        if notes is not None:
            values["notes"] = notes or None
        with self.sessions.write() as s:
            if not values:
                return self._get(s, experiment_id)  # raises NotFound
            exp = self._update_returning(s, experiment_id, [], values)
            if exp is None:
                raise NotFound(experiment_id)
            return exp

    def request_cancel(self, experiment_id: str) -> Experiment:
        with self.sessions.write() as s:
            now = utcnow()
            exp = self._update_returning(s, experiment_id, [E.c.status == "queued"], dict(
                status="canceled", cancel_requested=True, finished_at=now))
            exp = exp or self._update_returning(s, experiment_id, [E.c.status == "running"], dict(
                cancel_requested=True))
            if exp is not None:
                return exp
            current = self._get(s, experiment_id)  # raises NotFound
        raise IllegalTransition(f"cannot cancel an experiment that is {current.status}")

    # ------------------------------------------------------------------ worker side

    def start_attempt(self, experiment_id: str, worker: str) -> Experiment | None:
        with self.sessions.write() as s:
            now = utcnow()
            exp = self._update_returning(
                s, experiment_id, [E.c.status == "queued", E.c.cancel_requested.is_(False)],
                dict(status="running", attempts=E.c.attempts + 1, worker=worker, step=0,
                     started_at=now, heartbeat_at=now, finished_at=None, error=None))
            if exp is not None:
                # idempotent re-run: the partial series of earlier attempts go in this transaction
                for child in (P, SERIES, BLK, M):
                    s.execute(sa.delete(child).where(child.c.experiment_id == experiment_id,
                                                     child.c.attempt < exp.attempts))
                return exp
            self._update_returning(
                s, experiment_id, [E.c.status == "queued", E.c.cancel_requested.is_(True)],
                dict(status="canceled", finished_at=now))
            return None

    def heartbeat(self, experiment_id: str, attempt: int, step: int) -> bool:
        with self.sessions.write() as s:
            stmt = (sa.update(E)
                    .where(E.c.id == experiment_id, E.c.attempts == attempt, E.c.status == "running")
                    # a canceled job's beat is not renewed: if its worker does not stop it, the
                    # reaper ends it `canceled` after stale_after_s
                    .values(step=step, heartbeat_at=sa.case(
                        (E.c.cancel_requested.is_(True), E.c.heartbeat_at),
                        else_=sa.literal(utcnow(), UtcDateTime())))
                    .returning(E.c.cancel_requested))
            row = s.execute(stmt).one_or_none()
        if row is None:
            raise StaleAttempt(f"{experiment_id}: attempt {attempt} is not the running attempt")
        return bool(row.cancel_requested)

    def add_metrics(self, experiment_id: str, attempt: int, points: Iterable[MetricPoint]) -> None:
        rows = [dict(name=p.name, seed=int(p.seed), step=int(p.step),
                     value=None if math.isnan(p.value) else float(p.value)) for p in points]
        with self.sessions.write() as s:
            self._lock_attempt(s, experiment_id, attempt)
            write_points(s, experiment_id, attempt, rows, self.metric_batch)

    def add_matrices(self, experiment_id: str, attempt: int,
                     matrices: Iterable[CorrelationMatrix]) -> None:
        rows = []
        for mat in matrices:
            values = np.asarray(mat.values, dtype="<f4")  # (rows, cols)
            if values.ndim != 2:
                raise ValueError(f"matrix {mat.name} must be 2-D, got shape {values.shape}")
            rows.append(dict(experiment_id=experiment_id, attempt=attempt, name=mat.name,
                             seed=int(mat.seed), step=int(mat.step), rows=values.shape[0],
                             cols=values.shape[1], values=values.tobytes(),
                             row_labels=list(mat.row_labels), col_labels=list(mat.col_labels)))
        with self.sessions.write() as s:
            self._lock_attempt(s, experiment_id, attempt)
            if not rows:
                return
            # the same (name, seed, step) twice in one attempt: the later matrix wins
            dialect = s.get_bind().dialect.name
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert
            else:
                from sqlalchemy.dialects.postgresql import insert
            stmt = insert(M)
            stmt = stmt.on_conflict_do_update(
                index_elements=[M.c.experiment_id, M.c.name, M.c.seed, M.c.step],
                set_={c: stmt.excluded[c] for c in
                      ("attempt", "rows", "cols", "values", "row_labels", "col_labels")})
            s.execute(stmt, rows)

    def finish(self, experiment_id: str, attempt: int, status: Status, *,
               summary: dict[str, Any] | None = None, error: str | None = None) -> Experiment:
        if status not in TERMINAL:
            raise ValueError(f"finish() needs a terminal status, got {status!r}")
        shown = public_error(error)
        if shown != error:  # the full text stays server-side, in the log, with the job's id
            log.info("experiment %s attempt %d settled %s; full error: %s", experiment_id,
                     attempt, status, error, extra={"experiment_id": experiment_id})
        values: dict[str, Any] = dict(status=status, summary=_finite(summary), error=shown,
                                      finished_at=utcnow())
        if status == "succeeded":
            values["step"] = E.c.total_steps
        return self._end_attempt(experiment_id, attempt, values)

    def stale_running(self, older_than_s: float) -> list[Experiment]:
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self.sessions.read() as s:
            rows = s.execute(sa.select(E).where(
                E.c.status == "running",
                sa.func.coalesce(E.c.heartbeat_at, E.c.started_at) < cutoff,
            ).order_by(E.c.created_at)).all()
        return [_to_experiment(r) for r in rows]

    def requeue(self, experiment_id: str, attempt: int, *, max_attempts: int) -> Experiment:
        canceled = E.c.cancel_requested.is_(True)
        exhausted = E.c.attempts >= max_attempts
        terminal = sa.or_(canceled, exhausted)
        values = dict(
            status=sa.case((canceled, "canceled"), (exhausted, "failed"), else_="queued"),
            error=sa.case((canceled, None), (exhausted, sa.literal(
                f"worker lost: no heartbeat, gave up after {max_attempts} attempts")), else_=None),
            finished_at=sa.case((terminal, sa.literal(utcnow(), UtcDateTime())), else_=None),
            worker=None, heartbeat_at=None,
        )
        return self._end_attempt(experiment_id, attempt, values)

    # ------------------------------------------------------------------ reads

    def metric_names(self, experiment_id: str) -> list[str]:
        with self.sessions.read() as s:
            return list(s.scalars(sa.select(SERIES.c.name).distinct()
                                  .where(SERIES.c.experiment_id == experiment_id)
                                  .order_by(SERIES.c.name)))

    def get_metrics(self, experiment_id: str, *, names: Sequence[str] | None = None,
                    since_step: int | None = None, max_points: int | None = None,
                    seed: int | None = None) -> dict[str, list[MetricPoint]]:
        with self.sessions.read() as s:
            return read_series(s, experiment_id, names=names, since_step=since_step,
                               max_points=max_points, seed=seed)

    def get_matrix(self, experiment_id: str, name: str, *, step: int | None = None,
                   seed: int | None = None) -> CorrelationMatrix | None:
        query = sa.select(M).where(M.c.experiment_id == experiment_id, M.c.name == name)
        if seed is not None:
            query = query.where(M.c.seed == seed)
        if step is not None:
            query = query.where(M.c.step == step)
        query = query.order_by(M.c.step.desc(), M.c.seed).limit(1)
        with self.sessions.read() as s:
            row = s.execute(query).one_or_none()
        if row is None:
            return None
        values = np.frombuffer(row.values, dtype="<f4").reshape(row.rows, row.cols)
        return CorrelationMatrix(name=row.name, step=row.step, seed=row.seed,
                                 values=values.astype(float).tolist(),
                                 row_labels=list(row.row_labels), col_labels=list(row.col_labels))

    def matrix_steps(self, experiment_id: str) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        with self.sessions.read() as s:
            for name, step in s.execute(sa.select(M.c.name, M.c.step).distinct()
                                        .where(M.c.experiment_id == experiment_id)
                                        .order_by(M.c.name, M.c.step)):
                out.setdefault(name, []).append(step)
        return out

    def counts_by_status(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        with self.sessions.read() as s:
            for status, n in s.execute(sa.select(E.c.status, sa.func.count()).group_by(E.c.status)):
                counts[status] = n
        return counts

    def operations(self) -> Operations:
        active: dict[tuple[str | None, str], int] = {}
        with self.sessions.read() as s:
            for queue, status, n in s.execute(
                    sa.select(E.c.queue, E.c.status, sa.func.count())
                    .where(E.c.status.in_(("queued", "running")))
                    .group_by(E.c.queue, E.c.status)):
                active[(queue, status)] = n
            running = [RunningJob(*row) for row in s.execute(
                sa.select(E.c.worker, E.c.queue, E.c.heartbeat_at, E.c.started_at)
                .where(E.c.status == "running"))]
            requeued, extra = s.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(E.c.attempts - 1), 0))
                .where(E.c.attempts > 1)).one()
        return Operations(active_by_queue=active, running=running,
                          requeued_experiments=int(requeued), requeues=int(extra))

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
