"""Read side of metric series, downsampled in SQL (MLflow PR #24305: never load 10^5 rows for a
1000-point chart).

A series longer than `max_points` is cut into B = (max_points - 2) // 2 buckets; per bucket the
database keeps the point with the minimum and the one with the maximum value, plus the series'
first and last point: at most 2B + 2 <= max_points points, always containing the global first,
last, min and max. Two plans, both in SQL:
- blocks (a long series read whole): bucket the min/max roll-ups of series.py, ~n/64 block
  rows (1.6k for 10^5 points; a window sort on PostgreSQL, a GROUP BY on SQLite);
- raw points (a series with fewer than ~32 x max_points points, or a `since_step` range), per
  equal step range: on SQLite one index range scan for the min and one for the max (its window
  functions are slow: 0.6 s for 10^5 points), on PostgreSQL a window sort (1000 correlated
  subqueries cost it more than sorting a few thousand rows).
Ties on a step and max_points < 4 can leave a few extra candidates; `trim` cuts those in Python.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import groupby
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from lab.store.base import MetricPoint
from lab.store.series import BLK, BLOCK_POINTS, P, S

NAN = float("nan")

# NaN is stored as NULL; `value IS NULL` first in the sort key keeps NaN from being a min or max.
_SERIES = "experiment_id = :eid AND name = :name AND seed = :seed"
_BUCKET = (_SERIES + " AND step >= :lo + (CAST(b.i AS BIGINT) * :span) / :nb"
           " AND step < :lo + (CAST(b.i + 1 AS BIGINT) * :span) / :nb")
_RANGE_SCAN_SQL = sa.text(f"""
WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < :nb),
picked(id) AS (
  SELECT (SELECT id FROM metric_points WHERE {_BUCKET}
          ORDER BY value IS NULL, value, step LIMIT 1) FROM b
  UNION
  SELECT (SELECT id FROM metric_points WHERE {_BUCKET}
          ORDER BY value IS NULL, value DESC, step DESC LIMIT 1) FROM b
  UNION
  SELECT (SELECT id FROM metric_points WHERE {_SERIES} AND step >= :lo ORDER BY step, id LIMIT 1)
  UNION
  SELECT (SELECT id FROM metric_points WHERE {_SERIES} ORDER BY step DESC, id DESC LIMIT 1)
)
SELECT step, value FROM metric_points WHERE id IN (SELECT id FROM picked) ORDER BY step, id
""")
# PostgreSQL runs a window sort over the range faster than ~1000 correlated subqueries
_BUCKET_OF = "(CAST(step - :lo AS BIGINT) * :nb) / :span"
_WINDOW_SQL = sa.text(f"""
SELECT step, value FROM (
  SELECT step, value, id,
    ROW_NUMBER() OVER (PARTITION BY {_BUCKET_OF} ORDER BY value IS NULL, value, step) AS rlo,
    ROW_NUMBER() OVER (PARTITION BY {_BUCKET_OF}
                       ORDER BY value IS NULL, value DESC, step DESC) AS rhi
  FROM metric_points WHERE {_SERIES} AND step >= :lo
) ranked
WHERE rlo = 1 OR rhi = 1
   OR step = (SELECT min(step) FROM metric_points WHERE {_SERIES} AND step >= :lo)
   OR step = (SELECT max(step) FROM metric_points WHERE {_SERIES})
ORDER BY step, id
""")


def trim(series: list[MetricPoint], max_points: int) -> list[MetricPoint]:
    """Cut a step-sorted series to max_points, keeping first, last, min and max first."""
    if len(series) <= max_points:
        return series
    finite = [i for i, p in enumerate(series) if not math.isnan(p.value)] or [0]
    must = [0, len(series) - 1, min(finite, key=lambda i: series[i].value),
            max(finite, key=lambda i: series[i].value)]
    chosen = list(dict.fromkeys(must))[:max_points]
    taken = set(chosen)
    rest = [i for i in range(len(series)) if i not in taken]
    room = max_points - len(chosen)
    if room > 0 and rest:
        stride = len(rest) / room
        chosen += [rest[int(j * stride)] for j in range(room)]
    return [series[i] for i in sorted(chosen)]


def _point(name: str, seed: int, step: int, value: float | None) -> MetricPoint:
    return MetricPoint(name=name, step=step, value=NAN if value is None else value, seed=seed)


def _from_blocks(session: Session, experiment_id: str, catalogue: list, n_buckets: int):
    """{(name, seed): [(step, value)]} of the per-bucket min/max block extremes."""
    n_blocks = (S.c.n_points + (BLOCK_POINTS - 1)) // BLOCK_POINTS
    bucket = (sa.cast(BLK.c.block, sa.BigInteger) * n_buckets) // n_blocks
    joined = BLK.join(S, sa.and_(S.c.experiment_id == BLK.c.experiment_id,
                                 S.c.name == BLK.c.name, S.c.seed == BLK.c.seed))
    where = (BLK.c.experiment_id == experiment_id,
             sa.tuple_(BLK.c.name, BLK.c.seed).in_([(c.name, c.seed) for c in catalogue]))
    if session.get_bind().dialect.name == "sqlite":
        # SQLite's documented bare-column rule: with one min()/max() aggregate, the other columns
        # come from the row holding that min/max. A GROUP BY is ~7x faster than its windows here.
        group = (BLK.c.name, BLK.c.seed, bucket)
        query = sa.union_all(
            sa.select(BLK.c.name, BLK.c.seed, BLK.c.lo_step, sa.func.min(BLK.c.lo_value))
            .select_from(joined).where(*where).group_by(*group),
            sa.select(BLK.c.name, BLK.c.seed, BLK.c.hi_step, sa.func.max(BLK.c.hi_value))
            .select_from(joined).where(*where).group_by(*group),
        )
        rows = session.execute(query).all()
    else:
        part = (BLK.c.name, BLK.c.seed, bucket)
        ranked = sa.select(
            BLK.c.name, BLK.c.seed, BLK.c.lo_step, BLK.c.lo_value, BLK.c.hi_step, BLK.c.hi_value,
            sa.func.row_number().over(partition_by=part, order_by=(
                BLK.c.lo_value.is_(None), BLK.c.lo_value, BLK.c.lo_step)).label("rlo"),
            sa.func.row_number().over(partition_by=part, order_by=(
                BLK.c.hi_value.is_(None), BLK.c.hi_value.desc(), BLK.c.hi_step.desc())).label("rhi"),
        ).select_from(joined).where(*where).subquery()
        rows = []
        for name, seed, lo_step, lo_value, hi_step, hi_value, rlo, rhi in session.execute(
                sa.select(ranked).where(sa.or_(ranked.c.rlo == 1, ranked.c.rhi == 1))):
            if rlo == 1:
                rows.append((name, seed, lo_step, lo_value))
            if rhi == 1:
                rows.append((name, seed, hi_step, hi_value))
    out: dict[tuple[str, int], list[tuple[int, float | None]]] = defaultdict(list)
    for name, seed, step, value in rows:
        if step is not None and value is not None:  # a bucket of NaN only has no extreme
            out[(name, seed)].append((step, value))
    for c in catalogue:
        out[(c.name, c.seed)] += [(c.min_step, c.first_value), (c.max_step, c.last_value)]
    return out


def read_series(session: Session, experiment_id: str, *, names: Sequence[str] | None,
                since_step: int | None, max_points: int | None,
                seed: int | None) -> dict[str, list[MetricPoint]]:
    if max_points is not None and max_points < 1:
        raise ValueError("max_points must be >= 1")
    conds = [S.c.experiment_id == experiment_id]
    if names:
        conds.append(S.c.name.in_(list(names)))
    if seed is not None:
        conds.append(S.c.seed == seed)
    if since_step is not None:
        conds.append(S.c.max_step >= since_step)
    catalogue = session.execute(sa.select(S).where(*conds).order_by(S.c.name, S.c.seed)).all()
    n_buckets = max(1, ((max_points or 4) - 2) // 2)

    def use_blocks(c) -> bool:  # enough blocks for about max_points / 2 candidates or more
        whole = since_step is None or since_step <= c.min_step
        return whole and -(-c.n_points // BLOCK_POINTS) >= max(1, n_buckets // 2)

    small = [(c.name, c.seed) for c in catalogue if max_points is None or c.n_points <= max_points]
    big = [c for c in catalogue if max_points is not None and c.n_points > max_points]
    out: dict[str, dict[int, list[MetricPoint]]] = defaultdict(dict)
    if small:
        query = (sa.select(P.c.name, P.c.seed, P.c.step, P.c.value)
                 .where(P.c.experiment_id == experiment_id, sa.tuple_(P.c.name, P.c.seed).in_(small))
                 .order_by(P.c.name, P.c.seed, P.c.step, P.c.id))
        if since_step is not None:
            query = query.where(P.c.step >= since_step)
        rows = session.execute(query).all()  # sorted by (name, seed, step)
        for (name, seed_), group in groupby(rows, key=lambda r: (r[0], r[1])):
            out[name][seed_] = [MetricPoint(name, step, NAN if value is None else value, seed_)
                                for _, _, step, value in group]

    by_blocks = [c for c in big if use_blocks(c)]
    if by_blocks:
        for (name, seed_), pairs in _from_blocks(session, experiment_id, by_blocks,
                                                 n_buckets).items():
            pts = [_point(name, seed_, step, value) for step, value in sorted(set(pairs),
                   key=lambda sv: (sv[0], math.inf if sv[1] is None else sv[1]))]
            out[name][seed_] = trim(pts, max_points)  # type: ignore[arg-type]
    range_sql = _RANGE_SCAN_SQL if session.get_bind().dialect.name == "sqlite" else _WINDOW_SQL
    for c in big:
        if use_blocks(c):
            continue
        lo = c.min_step if since_step is None else max(c.min_step, since_step)
        params = dict(eid=experiment_id, name=c.name, seed=c.seed, lo=lo,
                      span=c.max_step - lo + 1, nb=n_buckets)
        pts = [_point(c.name, c.seed, step, value)
               for step, value in session.execute(range_sql, params)]
        if pts:
            out[c.name][c.seed] = trim(pts, max_points)  # type: ignore[arg-type]
    return {name: [p for s in sorted(by_seed) for p in by_seed[s]]
            for name, by_seed in sorted(out.items())}
