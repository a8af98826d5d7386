"""Write side of metric series: points in batches, plus two small summaries kept in step with
them in the same transaction, so reads never scan a whole series to plan or downsample it:

- `metric_series`: per (name, seed) the number of points, first/last step and their values;
- `metric_blocks`: per run of BLOCK_POINTS consecutive points (write order) the min and max
  point. A 10^5-point series has ~1.6k blocks; downsample.py buckets blocks, not points.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lab.store.orm import MetricBlockRow, MetricPointRow, MetricSeriesRow

BLOCK_POINTS = 64  # part of the stored data's meaning: changing it needs a data migration

P = MetricPointRow.__table__
S = MetricSeriesRow.__table__
BLK = MetricBlockRow.__table__


def _insert(session: Session):
    if session.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert


def _lower(new, cur) -> sa.ColumnElement[bool]:
    """The incoming extreme replaces the stored one (NULL = NaN only, never wins)."""
    return sa.or_(cur.is_(None), sa.and_(new.is_not(None), new < cur))


def _higher(new, cur) -> sa.ColumnElement[bool]:
    return sa.or_(cur.is_(None), sa.and_(new.is_not(None), new > cur))


def _summaries(rows: list[dict[str, Any]], n_before: dict[tuple[str, int], int]):
    """Series and block summaries of a batch of point rows (plain Python over one batch)."""
    series: dict[tuple[str, int], dict[str, Any]] = {}
    blocks: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in rows:
        key = (r["name"], r["seed"])
        step, value = r["step"], r["value"]
        s = series.get(key)
        if s is None:
            s = series[key] = dict(name=key[0], seed=key[1], n_points=0, min_step=step,
                                   first_value=value, max_step=step, last_value=value)
        ordinal = n_before.get(key, 0) + s["n_points"]
        s["n_points"] += 1
        if step < s["min_step"]:
            s["min_step"], s["first_value"] = step, value
        if step >= s["max_step"]:
            s["max_step"], s["last_value"] = step, value
        bkey = (key[0], key[1], ordinal // BLOCK_POINTS)
        b = blocks.get(bkey)
        if b is None:
            b = blocks[bkey] = dict(name=key[0], seed=key[1], block=bkey[2], lo_step=None,
                                    lo_value=None, hi_step=None, hi_value=None)
        if value is not None:
            if b["lo_value"] is None or value < b["lo_value"]:
                b["lo_step"], b["lo_value"] = step, value
            if b["hi_value"] is None or value > b["hi_value"]:
                b["hi_step"], b["hi_value"] = step, value
    return list(series.values()), list(blocks.values())


def write_points(session: Session, experiment_id: str, attempt: int,
                 rows: list[dict[str, Any]], batch: int) -> None:
    """Insert point rows (dicts with name, seed, step, value; value None for NaN) in batches of
    `batch` and update the series and block summaries. The caller holds the attempt lock."""
    if not rows:
        return
    for r in rows:
        r["experiment_id"], r["attempt"] = experiment_id, attempt
    for i in range(0, len(rows), batch):
        session.execute(sa.insert(P), rows[i:i + batch])  # executemany per batch

    keys = sorted({(r["name"], r["seed"]) for r in rows})
    query = sa.select(S.c.name, S.c.seed, S.c.n_points).where(
        S.c.experiment_id == experiment_id, sa.tuple_(S.c.name, S.c.seed).in_(keys))
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()  # ordinals: one writer per series at a time
    n_before = {(n, s): c for n, s, c in session.execute(query)}
    series, blocks = _summaries(rows, n_before)
    common = dict(experiment_id=experiment_id, attempt=attempt)
    insert = _insert(session)

    stmt = insert(S)
    new = stmt.excluded
    first_wins = new.min_step < S.c.min_step
    last_wins = new.max_step >= S.c.max_step
    session.execute(stmt.on_conflict_do_update(
        index_elements=[S.c.experiment_id, S.c.name, S.c.seed],
        set_={"n_points": S.c.n_points + new.n_points,
              "min_step": sa.case((first_wins, new.min_step), else_=S.c.min_step),
              "first_value": sa.case((first_wins, new.first_value), else_=S.c.first_value),
              "max_step": sa.case((last_wins, new.max_step), else_=S.c.max_step),
              "last_value": sa.case((last_wins, new.last_value), else_=S.c.last_value)},
    ), [{**common, **s} for s in series])

    stmt = insert(BLK)
    new = stmt.excluded
    lo, hi = _lower(new.lo_value, BLK.c.lo_value), _higher(new.hi_value, BLK.c.hi_value)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[BLK.c.experiment_id, BLK.c.name, BLK.c.seed, BLK.c.block],
        set_={"lo_step": sa.case((lo, new.lo_step), else_=BLK.c.lo_step),
              "lo_value": sa.case((lo, new.lo_value), else_=BLK.c.lo_value),
              "hi_step": sa.case((hi, new.hi_step), else_=BLK.c.hi_step),
              "hi_value": sa.case((hi, new.hi_value), else_=BLK.c.hi_value)},
    ), [{**common, **b} for b in blocks])
