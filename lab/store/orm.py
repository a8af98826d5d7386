"""ORM tables of the store (SQLAlchemy 2, typed). Alembic owns the schema: these classes describe
it for queries and for `alembic revision --autogenerate`; production code never calls create_all.
The experiment and metric tables live here; sweeps.py and users.py hold theirs, and tables.py
gathers them all into one metadata.

Timestamps are timezone-aware UTC in Python on every backend (SQLite stores naive UTC text).
JSON is JSONB on PostgreSQL. Matrix values are float32 bytes (rows x cols, little endian).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from lab.store.base import Experiment

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def finite_json(obj: Any) -> Any:
    """JSON without NaN/inf (PostgreSQL's JSONB rejects them): non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite has no time zones, so it stores naive UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JsonType, list[str]: JsonType}


class ExperimentRow(Base):
    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    tags: Mapped[list[str]] = mapped_column(JsonType)
    spec: Mapped[dict[str, Any]] = mapped_column(JsonType)
    spec_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    step: Mapped[int] = mapped_column(sa.Integer, default=0)
    total_steps: Mapped[int] = mapped_column(sa.Integer, default=0)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    error: Mapped[str | None] = mapped_column(sa.Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JsonType)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    retry_of: Mapped[str | None] = mapped_column(
        sa.String(32), sa.ForeignKey("experiments.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))  # unique per owner
    # lab server (migration 0003): who submitted it, its priority among that
    # user's jobs, and the Celery queue it was routed to (None: rows from before 0003)
    owner: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    priority: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")
    queue: Mapped[str | None] = mapped_column(sa.String(64))
    notes: Mapped[str | None] = mapped_column(sa.Text)  # migration 0005: editable free text

    __table_args__ = (
        # keyset pagination walks (created_at, id)
        sa.Index("ix_experiments_created_at_id", "created_at", "id"),
        # the fair claim scans queued rows of one queue
        sa.Index("ix_experiments_status_queue", "status", "queue"),
        # Idempotency-Key is per user: another owner's key is invisible (migration 0004)
        sa.Index("uq_experiments_owner_idempotency_key", "owner", "idempotency_key", unique=True),
    )


class StepRecord:
    """The columns a metric point and a matrix share, first in their tables: a surrogate id, the
    experiment and attempt that wrote it, and the (name, seed, step) it is of."""

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True, autoincrement=True, sort_order=-1)
    experiment_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("experiments.id", ondelete="CASCADE"), sort_order=-1)
    attempt: Mapped[int] = mapped_column(sa.Integer, sort_order=-1)
    name: Mapped[str] = mapped_column(sa.String(200), sort_order=-1)
    seed: Mapped[int] = mapped_column(sa.Integer, sort_order=-1)
    step: Mapped[int] = mapped_column(sa.Integer, sort_order=-1)


class MetricPointRow(StepRecord, Base):
    __tablename__ = "metric_points"

    value: Mapped[float | None] = mapped_column(sa.Float)  # NULL: NaN (SQLite has no NaN)

    __table_args__ = (
        # range reads of one series; `value` last so the downsampling query is index-only
        sa.Index("ix_metric_points_series", "experiment_id", "name", "seed", "step", "value"),
    )


class MetricSeriesRow(Base):
    """One row per (experiment, name, seed): the catalogue of series with their length and step
    range, kept up to date by add_metrics, so reads need no full scan to plan downsampling."""

    __tablename__ = "metric_series"

    experiment_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    seed: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    attempt: Mapped[int] = mapped_column(sa.Integer)
    n_points: Mapped[int] = mapped_column(sa.Integer)
    min_step: Mapped[int] = mapped_column(sa.Integer)
    first_value: Mapped[float | None] = mapped_column(sa.Float)  # the value at min_step
    max_step: Mapped[int] = mapped_column(sa.Integer)
    last_value: Mapped[float | None] = mapped_column(sa.Float)  # the value at max_step


class MetricBlockRow(Base):
    """Min/max roll-up of BLOCK_POINTS consecutive points of a series (by write order), so a
    downsampled read of a 10^5-point series sorts ~1.6k block rows instead of 10^5 points."""

    __tablename__ = "metric_blocks"

    experiment_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    seed: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    block: Mapped[int] = mapped_column(sa.Integer, primary_key=True)  # ordinal // BLOCK_POINTS
    attempt: Mapped[int] = mapped_column(sa.Integer)
    lo_step: Mapped[int | None] = mapped_column(sa.Integer)  # the block's minimum (NaN skipped)
    lo_value: Mapped[float | None] = mapped_column(sa.Float)
    hi_step: Mapped[int | None] = mapped_column(sa.Integer)  # the block's maximum
    hi_value: Mapped[float | None] = mapped_column(sa.Float)


class MatrixRow(StepRecord, Base):
    __tablename__ = "correlation_matrices"

    rows: Mapped[int] = mapped_column(sa.Integer)
    cols: Mapped[int] = mapped_column(sa.Integer)
    values: Mapped[bytes] = mapped_column(sa.LargeBinary)  # float32, row-major
    row_labels: Mapped[list[str]] = mapped_column(JsonType)
    col_labels: Mapped[list[str]] = mapped_column(JsonType)

    __table_args__ = (
        sa.UniqueConstraint("experiment_id", "name", "seed", "step"),
    )




def to_experiment(row: sa.Row) -> Experiment:
    """An `experiments` row (Core result row) as the domain object."""
    from lab.store.public_error import public_error

    m = row._mapping
    values = {col.name: m[col.name] for col in ExperimentRow.__table__.columns}
    if values["error"]:  # rows settled before errors were scrubbed on write
        values["error"] = public_error(values["error"])
    return Experiment(**values)
