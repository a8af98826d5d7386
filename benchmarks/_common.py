"""What the service benchmarks share: a throwaway PostgreSQL database (the tests' helper, from
ADVLAB_TEST_PG_URL) and a percentile of latency samples."""

from __future__ import annotations

from devtools.services import throwaway_pg_database  # noqa: F401  (re-exported)


def percentile(samples: list[float], q: float) -> float:
    """The sample at rank round(q·(n−1)) of the sorted samples, q in [0, 1]; NaN when empty."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
